//! The KVM side of `VcpuSignalHandle`: the handle shares the vcpu's `kvm_run` mapping
//! (crosvm's design) and asks its `KickState` for an exit (atomic stores only,
//! async-signal-safe); waking the thread sends it a real-time signal whose no-op handler
//! makes `KVM_RUN` return `EINTR`.

use std::sync::{Arc, OnceLock};

use vmm_sys_util::signal::register_signal_handler;

use super::kick::{kick_signal, Want};
use super::run::RunShared;
use crate::error::{Error, Result};
use crate::signal_handle::VcpuSignalHandleInner;

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
        if !self.0.lifecycle.is_closed() {
            self.0.kick.request(Want::Kick);
        }
    }

    fn wake_thread(&self) {
        self.0.kick.wake();
    }

    fn current_run(&self) -> Option<u64> {
        self.0.kick.current_run()
    }

    fn stop_for_good(&self) {
        self.0.kick.request(Want::Stop);
    }
}
