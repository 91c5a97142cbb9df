//! A read-only slot: guest writes become `Mmio` exits and memory stays as it was.

mod common;

use common::*;
use kvm_bindings::kvm_regs;
use vcpu_kvm::{IoOperation, Vcpu, VcpuExit};

#[test]
fn write_to_read_only_memory_exits_and_leaves_it_unchanged() {
    let (vm, vcpu) = long_mode("mem_access");
    let (_slot, rom) = vm.add_memory(0x20_0000, 0x1000, true, false).unwrap();
    vm.write(0x20_0000, &[0xaa]).unwrap();
    assert!(rom.readonly());
    let regs = vcpu.get_regs().unwrap();
    vcpu.set_regs(&kvm_regs { rbx: 0x20_0000, ..regs }).unwrap();
    expect_exit(&vcpu, VcpuExit::Mmio);
    let mut write = None;
    vcpu.handle_mmio(&mut |p| {
        if let IoOperation::Write(d) = p.operation {
            write = Some((p.address, d.to_vec()));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(write, Some((0x20_0000, vec![0x55])));
    // The read that follows is served from memory, which still holds 0xaa.
    expect_exit(&vcpu, VcpuExit::Hlt);
    assert_eq!(vcpu.get_regs().unwrap().rax & 0xff, 0xaa);
    let mut byte = [0u8];
    vm.read(0x20_0000, &mut byte).unwrap();
    assert_eq!(byte, [0xaa]);
}
