//! The KVM side of `VcpuSignalHandle`: the handle shares the vcpu's `kvm_run` mapping
//! (crosvm's design). Asking for an exit only stores 1 into `immediate_exit`
//! (async-signal-safe); waking the thread sends it a real-time signal whose no-op handler
//! makes `KVM_RUN` return `EINTR`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use super::run::RunShared;
use crate::error::{Error, Result};
use crate::signal_handle::VcpuSignalHandleInner;

/// Offset from `SIGRTMIN` of the signal that wakes vcpu threads. Neither Node, libuv nor
/// V8 uses real-time signals.
pub const KICK_SIGNAL_OFFSET: i32 = 0;

/// The wake-up signal's number.
pub fn kick_signal() -> i32 {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: the signal's only purpose is to make KVM_RUN return EINTR.
}

/// Installs the signal's handler once per process (without SA_RESTART, so the ioctl
/// returns).
pub(crate) fn install_kick_handler() -> Result<()> {
    static INSTALLED: OnceLock<i32> = OnceLock::new();
    let errno = *INSTALLED.get_or_init(|| match register_signal_handler(kick_signal(), on_kick) {
        Ok(()) => 0,
        Err(e) => e.errno(),
    });
    if errno != 0 {
        return Err(Error::errno("createVcpu", errno));
    }
    Ok(())
}

/// A KVM vcpu's handle: its `kvm_run` mapping and run state.
pub(crate) struct KvmSignalHandle(pub(crate) Arc<RunShared>);

impl VcpuSignalHandleInner for KvmSignalHandle {
    fn signal_immediate_exit(&self) {
        if !self.0.closed.load(Ordering::Acquire) {
            request_exit(&self.0);
        }
    }

    fn wake_thread(&self) {
        if !self.0.closed.load(Ordering::Acquire) {
            wake(&self.0);
        }
    }

    fn current_run(&self) -> Option<u64> {
        (self.0.running_tid.load(Ordering::Acquire) != 0).then(|| self.0.runs.load(Ordering::Relaxed))
    }
}

/// Sets `immediate_exit`, remembering that an exit was asked for (so the run it
/// interrupts consumes it).
pub(crate) fn request_exit(shared: &RunShared) {
    shared.kicked.store(true, Ordering::Release);
    shared.immediate_exit().store(1, Ordering::Release);
}

/// Sends the signal to the thread inside `KVM_RUN`, if any.
pub(crate) fn wake(shared: &RunShared) {
    let tid = shared.running_tid.load(Ordering::Acquire);
    if tid != 0 {
        // SAFETY: tgkill with our own pid only reaches threads of this process; at worst
        // a thread that just left KVM_RUN gets one no-op signal.
        unsafe {
            libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, kick_signal());
        }
    }
}
