//! The port-I/O hypercall ABI: id to the port, arguments in registers, results back.

mod common;

use common::*;
use vcpu_kvm::{Vcpu, VcpuExit};

#[test]
fn hypercall_with_four_arguments_returns_in_rax() {
    let (_vm, vcpu) = long_mode("hypercall");
    expect_exit(&vcpu, VcpuExit::Hypercall);
    let mut seen = None;
    vcpu.handle_hypercall(&mut |abi| {
        seen = Some((abi.hypercall_id(), abi.args()[..4].to_vec()));
        let sum: usize = abi.args()[..4].iter().sum();
        abi.set_results(&[sum * 10]);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, Some((7, vec![1, 2, 3, 4])));
    expect_exit(&vcpu, VcpuExit::Hlt);
    let regs = vcpu.get_regs().unwrap();
    assert_eq!(regs.rax, 100);
    // Unset results leave their registers alone.
    assert_eq!((regs.rbx, regs.rcx), (1, 2));
}

#[test]
fn unanswered_hypercall_returns_minus_one() {
    let (_vm, vcpu) = long_mode("hypercall");
    expect_exit(&vcpu, VcpuExit::Hypercall);
    vcpu.handle_hypercall(&mut |_| Ok(())).unwrap();
    expect_exit(&vcpu, VcpuExit::Hlt);
    assert_eq!(vcpu.get_regs().unwrap().rax, u64::MAX);
}
