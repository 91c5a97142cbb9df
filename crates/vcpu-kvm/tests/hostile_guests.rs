//! Guests doing odd but legal things at the edges: MMIO at the top of the mapped address
//! space, string I/O with a huge count.

mod common;

use common::*;
use kvm_bindings::kvm_regs;
use vcpu_kvm::{IoOperation, Vcpu, VcpuExit};

#[test]
fn mmio_at_the_top_of_the_address_space() {
    let (_vm, vcpu) = long_mode("mmio_top");
    expect_exit(&vcpu, VcpuExit::Mmio);
    let mut seen = None;
    vcpu.handle_mmio(&mut |p| {
        if let IoOperation::Read(d) = p.operation {
            seen = Some((p.address, d.len()));
            d.copy_from_slice(&[1, 2, 3, 4]);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, Some((0xffff_fffc, 4)));
    expect_exit(&vcpu, VcpuExit::Hlt);
    assert_eq!(vcpu.get_regs().unwrap().rax, 0x0403_0201);
}

#[test]
fn string_input_with_a_huge_count_fills_guest_memory_in_order() {
    const COUNT: u64 = 1 << 16;
    let (vm, vcpu) = long_mode("rep_insb_huge");
    let regs = vcpu.get_regs().unwrap();
    vcpu.set_regs(&kvm_regs { rcx: COUNT, ..regs }).unwrap();
    let (mut elements, mut exits) = (0u64, 0u64);
    loop {
        match run_bounded(&vcpu, 60).unwrap() {
            VcpuExit::Io => {
                exits += 1;
                vcpu.handle_io(&mut |p| {
                    assert_eq!(p.address, 0x31);
                    if let IoOperation::Read(d) = p.operation {
                        d[0] = elements as u8;
                        elements += 1;
                    }
                })
                .unwrap();
            }
            VcpuExit::Hlt => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(elements, COUNT);
    assert!((1..=COUNT).contains(&exits));
    let mut buf = vec![0u8; COUNT as usize];
    vm.read(0x10_0000, &mut buf).unwrap();
    assert!(buf.iter().enumerate().all(|(i, b)| *b == i as u8));
    assert_eq!(vcpu.get_regs().unwrap().rcx, 0);
}
