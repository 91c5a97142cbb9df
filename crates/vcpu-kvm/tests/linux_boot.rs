//! The Linux boot protocol with the test kernel of `guests/`: a bzImage and an ELF
//! build, loaded with an initrd and a command line, boot on COM1 and power off through
//! the i8042.

mod common;

use common::*;
use vcpu_kvm::vmm::devices::LegacyDevices;
use vcpu_kvm::vmm::linux::{load_linux, start_linux};
use vcpu_kvm::{IoOperation, Kvm, Vcpu, VcpuExit, VmConfig};

const MEM: usize = 64 << 20;

fn boot(kernel: &[u8]) -> String {
    let vm = irqchip_vm(MEM);
    let initrd: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    let boot = load_linux(&vm, kernel, Some(&initrd), "console=ttyS0 vcpu.test=1", 1, 0).unwrap();
    let devices = LegacyDevices::new(&vm).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    start_linux(&vcpu, &boot).unwrap();
    assert_eq!(devices.run(&vcpu).unwrap(), VcpuExit::SystemEventReset);
    String::from_utf8(devices.output().take()).unwrap()
}

fn expected() -> String {
    // 4096 bytes 0..=255 repeated: sum = 16 * 32640 = 0x7f800. The initrd sits at the
    // top of RAM below the kernel's initrd_addr_max.
    [
        "vcpu-test-kernel",
        "boot_params: ok",
        "loader: ff",
        "e820: 0 9fc00 1",
        "e820: 100000 3f00000 1",
        "cmdline: console=ttyS0 vcpu.test=1",
        "initrd: 1000 7f800",
        "bye",
        "",
    ]
    .join("\n")
}

#[test]
fn bzimage_boots_with_initrd_and_cmdline() {
    assert_eq!(boot(&guest_file("test_kernel.bzImage")), expected());
}

#[test]
fn elf_vmlinux_boots_with_initrd_and_cmdline() {
    assert_eq!(boot(&guest_file("test_kernel.elf")), expected());
}

#[test]
fn bad_kernels_are_refused_with_clear_errors() {
    let kvm = Kvm::open(None).unwrap();
    let vm = kvm.create_vm(VmConfig::default()).unwrap();
    vm.add_memory(0, 2 << 20, false, false).unwrap();
    let bz = guest_file("test_kernel.bzImage");
    for (kernel, code) in [
        (&b"not a kernel at all"[..], "EINVAL"),
        (&bz[..0x300], "EINVAL"),      // truncated inside the setup header's sectors
        (&[0u8; 4096][..], "EINVAL"),  // no HdrS magic
        (&guest("hlt")[..], "EINVAL"), // a flat binary
    ] {
        let err = load_linux(&vm, kernel, None, "", 1, 0).unwrap_err();
        assert_eq!(err.code_name(), code, "{}", err.message());
        assert!(err.message().contains("kernel"), "{}", err.message());
    }
    // A kernel that loads but an initrd bigger than RAM.
    let err = load_linux(&vm, &bz, Some(&vec![0u8; 4 << 20]), "", 1, 0).unwrap_err();
    assert_eq!(err.code_name(), "ENOMEM", "{}", err.message());
}

#[test]
fn the_devices_need_the_in_kernel_irqchip() {
    let vm = Kvm::open(None).unwrap().create_vm(VmConfig::default()).unwrap();
    assert_eq!(
        LegacyDevices::new(&vm).err().map(|e| e.code_name()).as_deref(),
        Some("EINVAL")
    );
}

#[test]
fn fwait_and_int3_in_kernel_mode_work_in_the_device_loop() {
    // Hardware KVM runs both natively; a KVM that emulates kernel code fails on them, and
    // the device loop then finishes them itself. Either way the #BP handler runs.
    let vm = irqchip_vm(2 << 20);
    vm.write(LOAD_ADDR, &guest("int3")).unwrap();
    let devices = LegacyDevices::new(&vm).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.setup_long_mode_at(LOAD_ADDR, 0x8000).unwrap();
    assert_eq!(devices.run(&vcpu).unwrap(), VcpuExit::SystemEventReset);
    assert!(devices.output().take().is_empty());
}

#[test]
fn an_instruction_rewritten_after_the_emulator_failed_on_it_runs_as_it_now_is() {
    // Linux patches running code through a temporary int3; a vcpu whose emulator fetched
    // that int3 may fail on it after the patch is done. The failed instruction did
    // nothing, so what is at RIP now runs: no #BP, whose handler would find no patch.
    let vm = irqchip_vm(2 << 20);
    let code = guest("int3");
    let at = code.windows(2).position(|w| w == [0x9b, 0xcc]).expect("fwait; int3") as u64 + 1;
    vm.write(LOAD_ADDR, &code).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.setup_long_mode_at(LOAD_ADDR, 0x8000).unwrap();
    let mut exit = vcpu.run().unwrap();
    if exit == (VcpuExit::InternalError { suberror: 1 }) {
        assert!(vcpu.finish_unemulated_instruction().unwrap()); // the fwait
        exit = vcpu.run().unwrap();
    }
    if exit != (VcpuExit::InternalError { suberror: 1 }) {
        eprintln!("this KVM runs int3 in kernel mode itself ({exit:?}): no emulation failure to see");
        return;
    }
    assert_eq!(vcpu.get_regs().unwrap().rip, LOAD_ADDR + at);
    vm.write(LOAD_ADDR + at, &[0x90]).unwrap(); // the patch another vcpu finished: a nop
    assert!(vcpu.finish_unemulated_instruction().unwrap());
    assert_eq!(vcpu.run().unwrap(), VcpuExit::Io);
    let mut port = (0, 0);
    vcpu.handle_io(&mut |p| {
        if let IoOperation::Write(d) = p.operation {
            port = (p.address, d[0]);
        }
    })
    .unwrap();
    assert_eq!(port, (0x600, 0xee), "the nop ran and no #BP was delivered");
}
