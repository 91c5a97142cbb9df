//! The sandbox machine: an ELF loaded above the machine's own structures, run at CPL 3
//! over the host's page tables, reaching only the hypercall port, with exceptions
//! reported through it; and run deadlines, which stop a guest that never exits.

use std::time::{Duration, Instant};

use vcpu_kvm::arch::x86_64::sandbox::{hypercall, LOAD_MIN, RING0_STACK_TOP};
use vcpu_kvm::vmm::x86_64::sandbox::load_sandbox_guest;
use vcpu_kvm::{Kvm, KvmVcpu, KvmVm, Vcpu, VcpuExit, VmConfig};

const MOV_EAX: u8 = 0xb8;
const WAIT_LOOP: [u8; 13] = {
    let id = hypercall::WAIT.to_le_bytes();
    // mov eax, WAIT; mov edx, 0x500; out dx, eax; jmp back to the start
    [
        MOV_EAX, id[0], id[1], id[2], id[3], 0xba, 0x00, 0x05, 0x00, 0x00, 0xef, 0xeb, 0xf3,
    ]
};
/// mov rax, [0]
const NULL_READ: [u8; 8] = [0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];
/// out 0x80, al: a port the bitmap refuses.
const OTHER_PORT: [u8; 2] = [0xe6, 0x80];
/// jmp $
const SPIN: [u8; 2] = [0xeb, 0xfe];

/// A minimal ELF executable: one PT_LOAD segment with `code` at `at`, entry at `at`.
fn elf(code: &[u8], at: u64) -> Vec<u8> {
    let mut f = vec![0u8; 0x78];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little-endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&at.to_le_bytes()); // entry
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let ph = &mut f[64..120];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R X
    ph[8..16].copy_from_slice(&0x78u64.to_le_bytes()); // offset
    ph[16..24].copy_from_slice(&at.to_le_bytes());
    ph[24..32].copy_from_slice(&at.to_le_bytes());
    ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    ph[40..48].copy_from_slice(&(code.len() as u64).to_le_bytes());
    f.extend_from_slice(code);
    f
}

fn sandbox(code: &[u8]) -> (KvmVm, std::sync::Arc<KvmVcpu>) {
    let vm = Kvm::open(None).unwrap().create_vm(VmConfig::default()).unwrap();
    vm.add_memory(0, 4 << 20, false, false).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    load_sandbox_guest(&vm, &vcpu, &elf(code, LOAD_MIN)).unwrap();
    (vm, vcpu)
}

/// The hypercall id of the exit `run()` returns (after a bounded run).
fn hypercall_id(vcpu: &KvmVcpu) -> u64 {
    let deadline = vcpu.arm_deadline(Duration::from_secs(5)).unwrap();
    assert_eq!(vcpu.run().unwrap(), VcpuExit::Hypercall);
    assert!(!deadline.disarm());
    let mut id = 0;
    vcpu.handle_hypercall(&mut |abi| {
        id = abi.hypercall_id() as u64;
        Ok(())
    })
    .unwrap();
    id
}

#[test]
fn the_guest_runs_in_ring_3_and_reaches_the_hypercall_port() {
    let (_vm, vcpu) = sandbox(&WAIT_LOOP);
    for _ in 0..3 {
        assert_eq!(hypercall_id(&vcpu), hypercall::WAIT as u64);
    }
    let sregs = vcpu.get_sregs().unwrap();
    assert_eq!((sregs.cs.dpl, sregs.cs.selector & 3, sregs.ss.dpl), (3, 3, 3));
    assert_eq!(
        vcpu.get_regs().unwrap().rsp,
        4 << 20,
        "the stack starts at the top of RAM"
    );
}

#[test]
fn a_null_read_is_reported_with_the_cpus_frame() {
    let (vm, vcpu) = sandbox(&NULL_READ);
    assert_eq!(hypercall_id(&vcpu), hypercall::FAULT as u64);
    let rsp = vcpu.get_regs().unwrap().rsp;
    assert_eq!(rsp, RING0_STACK_TOP - 7 * 8);
    let mut frame = [0u8; 7 * 8];
    vm.read(rsp, &mut frame).unwrap();
    let word = |i: usize| u64::from_le_bytes(frame[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(word(0), 14, "a page fault");
    assert_eq!(word(1) & 4, 4, "from user mode");
    assert_eq!(word(2), LOAD_MIN, "at the faulting instruction");
    assert_eq!(vcpu.get_sregs().unwrap().cr2, 0);
}

#[test]
fn another_port_is_a_general_protection_fault() {
    let (vm, vcpu) = sandbox(&OTHER_PORT);
    assert_eq!(hypercall_id(&vcpu), hypercall::FAULT as u64);
    let mut vector = [0u8; 8];
    vm.read(vcpu.get_regs().unwrap().rsp, &mut vector).unwrap();
    assert_eq!(u64::from_le_bytes(vector), 13);
}

#[test]
fn elfs_that_would_leave_the_guests_part_of_ram_are_refused() {
    let vm = Kvm::open(None).unwrap().create_vm(VmConfig::default()).unwrap();
    vm.add_memory(0, 4 << 20, false, false).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let code = |r: vcpu_kvm::Result<_>| r.unwrap_err().errno_value();
    assert_eq!(code(load_sandbox_guest(&vm, &vcpu, b"not an elf")), Some(libc::EINVAL));
    // Over the page tables, past the end of RAM, or truncated.
    assert_eq!(
        code(load_sandbox_guest(&vm, &vcpu, &elf(&SPIN, 0x6000))),
        Some(libc::EINVAL)
    );
    assert_eq!(
        code(load_sandbox_guest(&vm, &vcpu, &elf(&SPIN, (4 << 20) - 1))),
        Some(libc::EINVAL)
    );
    let whole = elf(&WAIT_LOOP, LOAD_MIN);
    assert_eq!(
        code(load_sandbox_guest(&vm, &vcpu, &whole[..whole.len() - 4])),
        Some(libc::EINVAL)
    );
    // RAM that is not a sandbox's.
    let small = Kvm::open(None).unwrap().create_vm(VmConfig::default()).unwrap();
    small.add_memory(0, 2 << 20, false, false).unwrap();
    let v = small.create_vcpu(0).unwrap();
    assert_eq!(code(load_sandbox_guest(&small, &v, &whole)), Some(libc::EINVAL));
}

#[test]
fn a_deadline_stops_a_guest_that_never_exits_until_disarmed() {
    let (_vm, vcpu) = sandbox(&SPIN);
    let start = Instant::now();
    let deadline = vcpu.arm_deadline(Duration::from_millis(50)).unwrap();
    assert!(vcpu.run().unwrap_err().is_interrupted());
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(vcpu.run().unwrap_err().is_interrupted(), "still passed");
    assert!(deadline.disarm(), "it had passed");
    // Disarmed in time: it never fires, and later runs are not interrupted by it.
    let early = vcpu.arm_deadline(Duration::from_secs(60)).unwrap();
    assert!(!early.disarm());
    let bound = vcpu.arm_deadline(Duration::from_millis(100)).unwrap();
    let start = Instant::now();
    assert!(vcpu.run().unwrap_err().is_interrupted());
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "the 60 s one is gone, this one fired"
    );
    drop(bound);
}

#[test]
fn many_deadlines_on_many_vcpus_each_fire_once_in_order() {
    let vms: Vec<_> = (0..4).map(|_| sandbox(&SPIN)).collect();
    let handles: Vec<_> = vms
        .into_iter()
        .enumerate()
        .map(|(i, (vm, vcpu))| {
            std::thread::spawn(move || {
                let _vm = vm;
                for round in 0..20u64 {
                    let ms = 1 + (i as u64 * 7 + round * 3) % 11;
                    let start = Instant::now();
                    let d = vcpu.arm_deadline(Duration::from_millis(ms)).unwrap();
                    assert!(vcpu.run().unwrap_err().is_interrupted());
                    assert!(start.elapsed() >= Duration::from_millis(ms));
                    assert!(d.disarm());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
