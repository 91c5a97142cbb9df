//! Bad arguments are refused with typed errors; closed objects say so.

mod common;

use vcpu_kvm::{Kvm, Vcpu, VmConfig};

#[test]
fn missing_device_says_what_to_do() {
    let err = Kvm::open(Some("/dev/no-such-kvm")).err().unwrap();
    assert_eq!(err.code_name(), "ENOENT");
    assert!(err.message().contains("modprobe"), "{}", err.message());
}

#[test]
fn memory_arguments_are_checked() {
    let kvm = Kvm::open(None).unwrap();
    let vm = kvm.create_vm(VmConfig::default()).unwrap();
    assert_eq!(
        vm.add_memory(0x123, 0x1000, false, false).unwrap_err().code_name(),
        "EINVAL"
    );
    assert_eq!(vm.add_memory(0, 0, false, false).unwrap_err().code_name(), "EINVAL");
    assert_eq!(
        vm.add_memory(1 << 52, 0x1000, false, false).unwrap_err().code_name(),
        "EINVAL"
    );
    vm.add_memory(0, 0x2000, false, false).unwrap();
    assert_eq!(
        vm.add_memory(0x1000, 0x1000, false, false).unwrap_err().code_name(),
        "EEXIST"
    );
    assert_eq!(vm.write(0x1ffff, &[1, 2]).unwrap_err().code_name(), "EFAULT");
}

#[test]
fn vcpu_ids_are_checked() {
    let kvm = Kvm::open(None).unwrap();
    let vm = kvm.create_vm(VmConfig::default()).unwrap();
    let _v0 = vm.create_vcpu(0).unwrap();
    assert_eq!(vm.create_vcpu(0).err().unwrap().code_name(), "EEXIST");
    assert_eq!(vm.create_vcpu(1 << 30).err().unwrap().code_name(), "EINVAL");
}

#[test]
fn closed_vm_and_vcpu_refuse_calls() {
    let kvm = Kvm::open(None).unwrap();
    let vm = kvm.create_vm(VmConfig::default()).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vm.close();
    vm.close();
    assert_eq!(
        vm.add_memory(0, 0x1000, false, false).unwrap_err().code_name(),
        "ECLOSED"
    );
    assert_eq!(vcpu.run().unwrap_err().code_name(), "ECLOSED");
    assert_eq!(vcpu.get_regs().unwrap_err().code_name(), "ECLOSED");
}
