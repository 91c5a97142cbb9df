//! As KVM's selftest `set_memory_region_test`: as many memory regions as KVM allows
//! (`KVM_CAP_NR_MEMSLOTS`), then one more, which is refused. The regions are windows into
//! the VM's one memory file, so the process's descriptors do not grow with them.

mod common;

use std::time::Instant;

use common::*;
use vcpu_kvm::{Kvm, VcpuExit, VmConfig};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[test]
fn kvms_maximum_of_regions_then_one_more_is_refused() {
    let kvm = Kvm::open(None).unwrap();
    let max = kvm.check_extension(kvm_bindings::KVM_CAP_NR_MEMSLOTS) as u64;
    assert!(max > 0);
    let vm = kvm.create_vm(VmConfig::default()).unwrap();
    let fds = open_fds();
    let base = 0x1_0000_0000u64;
    let started = Instant::now();
    for i in 0..max {
        vm.add_memory(base + i * 0x2000, 0x1000, false, false)
            .unwrap_or_else(|e| panic!("region {i} of {max}: {e:?}"));
    }
    eprintln!("{max} regions added in {:.2} s", started.elapsed().as_secs_f64());
    // One descriptor for all of them: the VM's memory file.
    assert_eq!(open_fds(), fds + 1);
    let err = vm.add_memory(base + max * 0x2000, 0x1000, false, false).unwrap_err();
    assert_eq!(err.code_name(), "ENOSPC", "{err:?}");
    // The last region is memory like any other; a freed number is used again.
    let last = base + (max - 1) * 0x2000;
    vm.write(last + 0xff0, b"end of the line").unwrap();
    assert_eq!(vm.read_vec(last + 0xff0, 15).unwrap(), b"end of the line");
    let (slot, _, _) = vm
        .slots()
        .into_iter()
        .find(|(_, r, _)| r.guest_address() == base)
        .unwrap();
    vm.remove_memory(slot).unwrap();
    let (again, region) = vm.add_memory(base, 0x1000, false, false).unwrap();
    assert_eq!(again, slot);
    assert_eq!(region.guest_address(), base);
    // A guest still runs in such a VM.
    vm.add_memory(0, RAM_SIZE, false, false).unwrap_err(); // all slots in use again
    vm.remove_memory(again).unwrap();
    vm.add_memory(0, RAM_SIZE, false, false).unwrap();
    vm.write(LOAD_ADDR, &guest("hlt")).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.setup_long_mode_at(LOAD_ADDR, 0x8000).unwrap();
    assert_eq!(run_bounded(&vcpu, 10).unwrap(), VcpuExit::Hlt);
}
