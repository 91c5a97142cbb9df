//! Registers set by the host are seen by the guest, and the other way round.

mod common;

use common::*;
use kvm_bindings::kvm_regs;
use vcpu_kvm::VcpuExit;

#[test]
fn registers_round_trip() {
    let (_vm, vcpu) = long_mode("regs");
    let regs = vcpu.get_regs().unwrap();
    vcpu.set_regs(&kvm_regs {
        rax: 40,
        rbx: 2,
        ..regs
    })
    .unwrap();
    expect_exit(&vcpu, VcpuExit::Hlt);
    let regs = vcpu.get_regs().unwrap();
    assert_eq!(regs.rax, 42);
    assert_eq!(regs.rcx, 0xc0ffee);
    assert_eq!(regs.rdx, regs.rip - 1); // rip is past the hlt
    let sregs = vcpu.get_sregs().unwrap();
    assert_eq!(sregs.cs.l, 1);
    assert_ne!(sregs.efer & (1 << 10), 0); // LMA
}
