//! Stopping a guest that never exits: immediate exit and the signal handle.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vcpu_kvm::{Vcpu, VcpuExit};

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
    let (_vm, vcpu) = long_mode("spin");
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
    // The kick was consumed: the next run enters the guest again (and is kicked again).
    assert!(run_bounded(&vcpu, 0).unwrap_err().is_interrupted());
}

#[test]
fn signal_before_run_makes_the_next_run_return() {
    let (_vm, vcpu) = long_mode("spin");
    vcpu.signal_handle().signal_immediate_exit();
    assert!(vcpu.run().unwrap_err().is_interrupted());
}
