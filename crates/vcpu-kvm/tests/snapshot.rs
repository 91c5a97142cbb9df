//! Snapshot and restore on real guests: a counting guest resumes with the next number,
//! restores from one file diverge without touching it, diff chains restore, a busy vcpu
//! is refused, and every kind of bad file is refused before anything is mapped.

mod common;

use common::*;
use vcpu_kvm::{Kvm, Vcpu, VcpuExit};

#[test]
fn a_counting_guest_resumes_with_the_next_number() {
    let (vm, vcpu) = long_mode("counter");
    for want in 1..=5 {
        assert_eq!(next_count(&vcpu), want);
    }
    let file = TempPath::new("resume");
    let info = vm.snapshot(&file.0, false, None).unwrap();
    // The guest's code page, its stack/page tables and its counter page at least.
    assert!(info.pages >= 3, "{info:?}");
    assert!(info.bytes >= info.pages * 4096);
    // The original runs on; the snapshot does not move.
    assert_eq!(next_count(&vcpu), 6);
    assert_eq!(next_count(&vcpu), 7);

    let restored = Kvm::open(None).unwrap().restore_vm(&file.0).unwrap();
    assert_eq!(restored.snapshot_vcpu_ids(), vec![0]);
    assert_eq!(counter_at(&restored), 5);
    let v = restored.create_vcpu(0).unwrap();
    assert_eq!(v.get_regs().unwrap().rbx, 5);
    assert_eq!(next_count(&v), 6);
    assert_eq!(next_count(&v), 7);
    assert_eq!(counter_at(&restored), 7);
}

#[test]
fn two_restores_from_one_file_diverge_and_the_file_never_changes() {
    let (vm, vcpu) = long_mode("counter");
    next_count(&vcpu);
    let file = TempPath::new("diverge");
    vm.snapshot(&file.0, false, None).unwrap();
    let before = std::fs::read(&file.0).unwrap();
    let kvm = Kvm::open(None).unwrap();
    let (a, b) = (kvm.restore_vm(&file.0).unwrap(), kvm.restore_vm(&file.0).unwrap());
    let (va, vb) = (a.create_vcpu(0).unwrap(), b.create_vcpu(0).unwrap());
    for _ in 0..10 {
        next_count(&va);
    }
    a.write(0x6000, b"only in a").unwrap();
    assert_eq!(next_count(&vb), 2);
    assert_eq!(counter_at(&a), 11);
    assert_eq!(counter_at(&b), 2);
    let mut other = [0u8; 9];
    b.read(0x6000, &mut other).unwrap();
    assert_eq!(other, [0; 9]);
    assert_eq!(std::fs::read(&file.0).unwrap(), before);
}

#[test]
fn a_diff_chain_restores_each_point() {
    let (vm, vcpu) = long_mode("counter");
    let (full, d1, d2) = (
        TempPath::new("chain-full"),
        TempPath::new("chain-d1"),
        TempPath::new("chain-d2"),
    );
    for _ in 0..5 {
        next_count(&vcpu);
    }
    let f = vm.snapshot(&full.0, false, None).unwrap();
    for _ in 0..5 {
        next_count(&vcpu);
    }
    vm.write(0x7000, &[0xab; 16]).unwrap(); // the host's own write counts too
    let one = vm.snapshot(&d1.0, true, None).unwrap();
    // The guest wrote its counter page (and its stack, if any): a few pages, not all.
    assert!(one.pages >= 2 && one.pages < f.pages, "diff {one:?}, full {f:?}");
    for _ in 0..5 {
        next_count(&vcpu);
    }
    vm.write(0x7000, &[0; 16]).unwrap(); // back to zero: the diff must say so
    vm.snapshot(&d2.0, true, None).unwrap();

    let kvm = Kvm::open(None).unwrap();
    let at1 = kvm.restore_vm(&d1.0).unwrap();
    let mut b = [0u8; 16];
    at1.read(0x7000, &mut b).unwrap();
    assert_eq!(b, [0xab; 16]);
    assert_eq!(next_count(&at1.create_vcpu(0).unwrap()), 11);
    let at2 = kvm.restore_vm(&d2.0).unwrap();
    at2.read(0x7000, &mut b).unwrap();
    assert_eq!(b, [0; 16]);
    let v2 = at2.create_vcpu(0).unwrap();
    assert_eq!(next_count(&v2), 16);

    // A diff of a restored VM applies to the file it was restored from.
    let d3 = TempPath::new("chain-d3");
    at2.snapshot(&d3.0, true, None).unwrap();
    assert_eq!(next_count(&kvm.restore_vm(&d3.0).unwrap().create_vcpu(0).unwrap()), 17);

    // Without its base, a diff is refused.
    std::fs::remove_file(&full.0).unwrap();
    let err = kvm.restore_vm(&d2.0).err().unwrap();
    assert_eq!(err.code_name(), "EINVAL");
    assert!(err.to_string().contains("base"), "{err}");
}

#[test]
fn a_vcpu_inside_run_or_with_an_exit_to_handle_is_busy() {
    let (vm, vcpu) = long_mode("counter");
    assert_eq!(run_bounded(&vcpu, 10).unwrap(), VcpuExit::Io);
    let file = TempPath::new("busy");
    let err = vm.snapshot(&file.0, false, None).err().unwrap();
    assert_eq!(err.code_name(), "EBUSY");
    assert!(!file.0.exists());
    vcpu.handle_io(&mut |_| {}).unwrap();
    vm.snapshot(&file.0, false, None).unwrap();
    // A diff needs something to be a diff of.
    let (fresh, _v) = long_mode("counter");
    assert_eq!(fresh.snapshot(&file.0, true, None).err().unwrap().code_name(), "EINVAL");
}

#[test]
fn an_irqchip_vm_gets_its_lapic_back() {
    let vm = irqchip_vm(RAM_SIZE);
    let vcpu = vm.create_vcpu(0).unwrap();
    let mut lapic = vcpu.get_lapic().unwrap();
    // The task priority register (offset 0x80) and the spurious vector (0xf0).
    lapic.regs[0x80] = 0x20;
    lapic.regs[0xf0] = 0xff_u8 as _;
    vcpu.set_lapic(&lapic).unwrap();
    let file = TempPath::new("lapic");
    vm.snapshot(&file.0, false, None).unwrap();
    let back = Kvm::open(None)
        .unwrap()
        .restore_vm(&file.0)
        .unwrap()
        .create_vcpu(0)
        .unwrap();
    let got = back.get_lapic().unwrap();
    assert_eq!(got.regs[0x80], 0x20);
    assert_eq!(got.regs[0xf0], 0xff_u8 as _);
    assert_eq!(got.regs[..0x400], vcpu.get_lapic().unwrap().regs[..0x400]);
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    let (vm, vcpu) = long_mode("counter");
    next_count(&vcpu);
    let good = TempPath::new("bad-good");
    vm.snapshot(&good.0, false, None).unwrap();
    let bytes = std::fs::read(&good.0).unwrap();
    let kvm = Kvm::open(None).unwrap();
    let refused = |name: &str, data: &[u8], why: &str| {
        let p = TempPath::new(name);
        std::fs::write(&p.0, data).unwrap();
        let err = kvm
            .restore_vm(&p.0)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert_eq!(err.code_name(), "EINVAL", "{name}: {err}");
        assert!(err.to_string().contains(why), "{name}: {err}");
    };
    refused("empty", &[], "not a vcpu snapshot");
    refused("text", b"hello, this is not a snapshot at all", "not a vcpu snapshot");
    refused("truncated", &bytes[..bytes.len() / 2], "truncated");
    let mut version = bytes.clone();
    version[8] = 99;
    refused("version", &version, "another version");
    let mut header = bytes.clone();
    header[40] ^= 1;
    refused("header", &header, "corrupt");
    let mut state = bytes.clone();
    let last = state.len() - 10;
    state[last] ^= 0x40;
    refused("state", &state, "corrupt");
    // A flipped byte in the guest's code page (0x1000 in the image after the header).
    let mut memory = bytes.clone();
    memory[4096 + 0x1000] ^= 1;
    refused("memory", &memory, "checksum");
    // Data where the guest had only zeros.
    let mut hole = bytes.clone();
    hole[4096 + 0x10_0000] = 7;
    refused("hole", &hole, "corrupt");
    assert_eq!(
        kvm.restore_vm(std::path::Path::new("/nonexistent/x.snap"))
            .err()
            .unwrap()
            .code_name(),
        "ENOENT"
    );
}
