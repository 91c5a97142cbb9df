//! A removed slot: guest accesses there become `Mmio` exits.

mod common;

use common::*;
use kvm_bindings::kvm_regs;
use vcpu_kvm::{IoOperation, Vcpu, VcpuExit};

#[test]
fn access_to_removed_memory_exits() {
    let (vm, vcpu) = long_mode("mem_access");
    let (slot, region) = vm.add_memory(0x20_0000, 0x1000, false, false).unwrap();
    vm.remove_memory(slot).unwrap();
    // The host mapping lives on while we hold the region.
    assert_eq!(region.len(), 0x1000);
    assert!(vm.read(0x20_0000, &mut [0u8]).is_err());
    let regs = vcpu.get_regs().unwrap();
    vcpu.set_regs(&kvm_regs { rbx: 0x20_0000, ..regs }).unwrap();
    let mut accesses = Vec::new();
    for _ in 0..2 {
        expect_exit(&vcpu, VcpuExit::Mmio);
        vcpu.handle_mmio(&mut |p| {
            match p.operation {
                IoOperation::Write(d) => accesses.push(("write", p.address, d[0])),
                IoOperation::Read(d) => {
                    d[0] = 0x77;
                    accesses.push(("read", p.address, 0x77));
                }
            }
            Ok(())
        })
        .unwrap();
    }
    expect_exit(&vcpu, VcpuExit::Hlt);
    assert_eq!(accesses, vec![("write", 0x20_0000, 0x55), ("read", 0x20_0000, 0x77)]);
    assert_eq!(vcpu.get_regs().unwrap().rax & 0xff, 0x77);
    assert_eq!(vm.remove_memory(slot).unwrap_err().code_name(), "ENOENT");
}
