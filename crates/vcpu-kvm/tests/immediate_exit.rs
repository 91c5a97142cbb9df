//! Stopping a guest that never exits: immediate exit and the signal handle.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vcpu_kvm::{IoOperation, Vcpu, VcpuExit};

#[test]
fn set_immediate_exit_returns_eintr_until_cleared() {
    let (_vm, vcpu) = long_mode("hlt");
    vcpu.set_immediate_exit(true);
    assert!(vcpu.run().unwrap_err().is_interrupted());
    assert!(vcpu.run().unwrap_err().is_interrupted());
    vcpu.set_immediate_exit(false);
    expect_exit(&vcpu, VcpuExit::Hlt);
}

#[test]
fn signal_handle_stops_a_spinning_guest_from_another_thread() {
    let (vm, vcpu) = long_mode("wait_flag");
    let handle = vcpu.signal_handle();
    let kicker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let at = Instant::now();
        handle.kick();
        at
    });
    let err = vcpu.run().unwrap_err();
    let stopped = Instant::now();
    let kicked = kicker.join().unwrap();
    assert!(err.is_interrupted());
    assert!(stopped.duration_since(kicked) < Duration::from_secs(1));
    // The kick was consumed by the run it interrupted: the next run enters the guest,
    // which now sees the flag and exits with it on port 0x10 (a kick still pending
    // would make the run return EINTR at once instead).
    vm.write(0x3000, &[0x5a]).unwrap();
    assert_eq!(run_bounded(&vcpu, 10).unwrap(), VcpuExit::Io);
    let mut seen = Vec::new();
    vcpu.handle_io(&mut |p| {
        if let IoOperation::Write(d) = p.operation {
            seen.push((p.address, d.to_vec()));
        }
    })
    .unwrap();
    assert_eq!(seen, vec![(0x10, vec![0x5a])]);
}

#[test]
fn signal_before_run_makes_the_next_run_return() {
    let (_vm, vcpu) = long_mode("spin");
    vcpu.signal_handle().signal_immediate_exit();
    assert!(vcpu.run().unwrap_err().is_interrupted());
}
