//! Exits the guest causes by itself: `hlt` and a triple fault.

mod common;

use common::*;
use vcpu_kvm::VcpuExit;

#[test]
fn hlt_exits_to_userspace() {
    let (_vm, vcpu) = long_mode("hlt");
    expect_exit(&vcpu, VcpuExit::Hlt);
}

#[test]
fn triple_fault_is_shutdown() {
    let (_vm, vcpu) = long_mode("triple_fault");
    expect_exit(&vcpu, VcpuExit::Shutdown);
}
