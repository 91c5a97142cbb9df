//! Dirty logging: the pages the guest writes in a slot that logs them, and no others;
//! reading the log clears it.

mod common;

use common::*;
use kvm_bindings::kvm_regs;
use vcpu_kvm::VcpuExit;

#[test]
fn the_log_names_exactly_the_pages_the_guest_wrote_and_reading_clears_it() {
    let (vm, vcpu) = long_mode("mem_access");
    let (slot, _ram) = vm.add_memory(0x20_0000, 0x10000, false, true).unwrap();
    // The host's own writes are not the guest's: nothing is logged for them.
    vm.write(0x20_5000, &[1, 2, 3]).unwrap();
    assert_eq!(vm.get_dirty_log(slot).unwrap(), vec![0]);
    let regs = vcpu.get_regs().unwrap();
    vcpu.set_regs(&kvm_regs { rbx: 0x20_3000, ..regs }).unwrap();
    expect_exit(&vcpu, VcpuExit::Hlt);
    // 16 pages in one word: only page 3 (0x203000) was written.
    assert_eq!(vm.get_dirty_log(slot).unwrap(), vec![1 << 3]);
    assert_eq!(vm.get_dirty_log(slot).unwrap(), vec![0]);
    let mut byte = [0u8];
    vm.read(0x20_3000, &mut byte).unwrap();
    assert_eq!(byte, [0x55]);
}

#[test]
fn a_slot_without_logging_refuses_to_give_a_log() {
    let (vm, _vcpu) = long_mode("hlt");
    let (slot, _ram) = vm.add_memory(0x20_0000, 0x10000, false, false).unwrap();
    let err = vm.get_dirty_log(slot).unwrap_err();
    assert_eq!(err.code_name(), "EINVAL", "{err:?}");
}
