//! The crosvm `Vm` device surface in Rust: ioevents count writes that never leave the
//! kernel, and an irqfd raises GSI 10 through the in-kernel IOAPIC.

mod common;

use common::*;
use vcpu_kvm::kvm::IoEventSpec;
use vcpu_kvm::{Vcpu, VcpuExit};

/// Runs to the next port write (answering MMIO) and returns its port.
fn next_port(vcpu: &vcpu_kvm::KvmVcpu) -> u64 {
    loop {
        match run_bounded(vcpu, 10).expect("run") {
            VcpuExit::Mmio => vcpu.handle_mmio(&mut |_| Ok(())).unwrap(),
            VcpuExit::Io => {
                let mut port = 0;
                vcpu.handle_io(&mut |p| port = p.address).unwrap();
                return port;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn ioevents_count_and_an_irqfd_interrupts() {
    let vm = irqchip_vm(RAM_SIZE);
    vm.write(LOAD_ADDR, &guest("ioevent_irq")).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.setup_long_mode_at(LOAD_ADDR, 0x8000).unwrap();
    let doorbell = vm
        .register_ioevent(IoEventSpec {
            address: 0x700,
            length: 1,
            datamatch: None,
            port: true,
        })
        .unwrap();
    let mmio = vm
        .register_ioevent(IoEventSpec {
            address: 0xd000_0000,
            length: 4,
            datamatch: Some(0x1234),
            port: false,
        })
        .unwrap();
    assert_eq!(next_port(&vcpu), 0x601);
    assert_eq!(doorbell.event().read().unwrap(), 3);
    assert_eq!(mmio.event().read().unwrap(), 2);
    let irq = vm.register_irq_event(10).unwrap();
    irq.trigger().unwrap();
    assert_eq!(next_port(&vcpu), 0x600);
    irq.close();
    assert_eq!(irq.trigger().unwrap_err().code_name(), "ECLOSED");
}
