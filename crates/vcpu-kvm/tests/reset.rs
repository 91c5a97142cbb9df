//! Reset in place: a VM goes back to its reset point (marked, or the snapshot it was
//! restored from) with only the pages written since put back, and runs as new.

mod common;

use common::*;
use vcpu_kvm::Kvm;

#[test]
fn a_marked_vm_goes_back_to_its_mark_memory_and_registers() {
    let (vm, vcpu) = long_mode("counter");
    // A second region, written by the host after the mark: 1000 pages.
    vm.add_memory(0x100_0000, 8 << 20, false, false).unwrap();
    vm.write(0x100_0000, b"kept").unwrap();
    assert_eq!(next_count(&vcpu), 1);
    vm.mark_reset_point().unwrap();
    let rip = vcpu.get_regs().unwrap().rip;
    for _ in 0..5 {
        next_count(&vcpu);
    }
    for page in 0..1000u64 {
        vm.write(0x100_0000 + page * 4096 + 8, &[0xab; 16]).unwrap();
    }
    assert_eq!(counter_at(&vm), 6);
    vm.reset().unwrap();
    assert_eq!(counter_at(&vm), 1, "the guest's write is undone");
    assert_eq!(vcpu.get_regs().unwrap().rip, rip, "the registers are the mark's");
    let mut b = [0u8; 24];
    vm.read(0x100_0000, &mut b).unwrap();
    assert_eq!(&b[..4], b"kept");
    assert_eq!(&b[8..], &[0; 16], "the host's writes are undone");
    for page in [1u64, 500, 999] {
        let mut b = [0u8; 16];
        vm.read(0x100_0000 + page * 4096 + 8, &mut b).unwrap();
        assert_eq!(b, [0; 16], "page {page}");
    }
    // It runs as new, and resets again.
    assert_eq!(next_count(&vcpu), 2);
    assert_eq!(next_count(&vcpu), 3);
    vm.reset().unwrap();
    assert_eq!(next_count(&vcpu), 2);
}

#[test]
fn a_restored_vm_resets_to_its_snapshot() {
    let (vm, vcpu) = long_mode("counter");
    assert_eq!(next_count(&vcpu), 1);
    let path = std::env::temp_dir().join(format!("vcpu-reset-{}.snap", std::process::id()));
    vm.snapshot(&path, false, None).unwrap();
    vm.close();
    let restored = Kvm::open(None).unwrap().restore_vm(&path).unwrap();
    let vcpu = restored.create_vcpu(0).unwrap();
    assert!(restored.has_reset_point());
    for want in 2..=4 {
        assert_eq!(next_count(&vcpu), want);
    }
    restored.reset().unwrap();
    assert_eq!(counter_at(&restored), 1);
    assert_eq!(next_count(&vcpu), 2);
    // A snapshot in between does not lose what was written before it.
    assert_eq!(next_count(&vcpu), 3);
    let later = std::env::temp_dir().join(format!("vcpu-reset-later-{}.snap", std::process::id()));
    restored.snapshot(&later, true, None).unwrap();
    assert_eq!(next_count(&vcpu), 4);
    restored.reset().unwrap();
    assert_eq!(next_count(&vcpu), 2);
    // Back at the restored snapshot, a diff is of it again.
    let diff = std::env::temp_dir().join(format!("vcpu-reset-diff-{}.snap", std::process::id()));
    restored.snapshot(&diff, true, None).unwrap();
    let again = Kvm::open(None).unwrap().restore_vm(&diff).unwrap();
    assert_eq!(next_count(&again.create_vcpu(0).unwrap()), 3);
    let _ = std::fs::remove_file(&diff);
    // A mark after writes and a snapshot since the restore keeps what differs from the
    // file, not only what the logs hold now.
    assert_eq!(next_count(&vcpu), 3);
    let between = std::env::temp_dir().join(format!("vcpu-reset-between-{}.snap", std::process::id()));
    restored.snapshot(&between, true, None).unwrap();
    restored.mark_reset_point().unwrap();
    assert_eq!(next_count(&vcpu), 4);
    restored.reset().unwrap();
    assert_eq!(
        counter_at(&restored),
        3,
        "the mark's count, written before the snapshot"
    );
    assert_eq!(next_count(&vcpu), 4);
    let _ = std::fs::remove_file(&between);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&later);
}

#[test]
fn reset_is_refused_without_a_point_or_after_the_layout_changed() {
    let (vm, vcpu) = long_mode("counter");
    assert_eq!(vm.reset().unwrap_err().code_name(), "EINVAL");
    vm.mark_reset_point().unwrap();
    // A reset leaves no diff base behind: the marked state is no snapshot's.
    let path = std::env::temp_dir().join(format!("vcpu-reset-base-{}.snap", std::process::id()));
    vm.snapshot(&path, false, None).unwrap();
    next_count(&vcpu);
    vm.reset().unwrap();
    assert_eq!(vm.snapshot(&path, true, None).unwrap_err().code_name(), "EINVAL");
    let _ = std::fs::remove_file(&path);
    vm.add_memory(0x100_0000, 4096, false, false).unwrap();
    let err = vm.reset().unwrap_err();
    assert_eq!(err.code_name(), "EINVAL");
    assert!(err.to_string().contains("layout changed"), "{err}");
}
