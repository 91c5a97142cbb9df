//! A 16-bit real-mode guest (KVM's reset state, with CS moved to 0).

mod common;

use common::*;
use vcpu_kvm::{IoOperation, Kvm, Vcpu, VcpuExit, VmConfig};

#[test]
fn real_mode_port_io_and_memory() {
    let kvm = Kvm::open(None).unwrap();
    let vm = kvm.create_vm(VmConfig::default()).unwrap();
    vm.add_memory(0, 0x10000, false, false).unwrap();
    vm.write(LOAD_ADDR, &guest("real_mode")).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    start_in_real_mode(&vcpu, LOAD_ADDR);
    expect_exit(&vcpu, VcpuExit::Io);
    let mut out = None;
    vcpu.handle_io(&mut |p| {
        if let IoOperation::Write(d) = p.operation {
            out = Some((p.address, d[0]));
        }
    })
    .unwrap();
    assert_eq!(out, Some((0x10, 0x42)));
    expect_exit(&vcpu, VcpuExit::Io);
    vcpu.handle_io(&mut |p| {
        if let IoOperation::Read(d) = p.operation {
            d[0] = 0x60;
        }
    })
    .unwrap();
    expect_exit(&vcpu, VcpuExit::Hlt);
    let mut byte = [0u8];
    vm.read(0x2000, &mut byte).unwrap();
    assert_eq!(byte, [0x61]);
}
