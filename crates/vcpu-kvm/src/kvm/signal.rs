//! Stopping a running vcpu from anywhere: `VcpuSignalHandle`.
//!
//! A handle shares the vcpu's `kvm_run` mapping. `signal_immediate_exit` only stores 1
//! into `immediate_exit` (async-signal-safe); `kick` also sends a real-time signal to the
//! thread inside `KVM_RUN`, whose no-op handler makes the ioctl return `EINTR`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use super::run::RunShared;
use crate::error::{Error, Result};

/// Offset from `SIGRTMIN` of the signal that kicks vcpu threads. Neither Node, libuv nor
/// V8 uses real-time signals.
pub const KICK_SIGNAL_OFFSET: i32 = 0;

/// The kick signal number.
pub fn kick_signal() -> i32 {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: the signal's only purpose is to make KVM_RUN return EINTR.
}

/// Installs the kick handler once per process (without SA_RESTART, so the ioctl returns).
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

/// Makes a vcpu's `run()` return `EINTR` (`Intr` in TS) from another thread or a signal
/// handler. Cheap to clone; holds the `kvm_run` mapping alive; does nothing once the
/// vcpu is closed.
#[derive(Clone)]
pub struct VcpuSignalHandle {
    shared: Arc<RunShared>,
}

impl VcpuSignalHandle {
    pub(crate) fn new(shared: Arc<RunShared>) -> Self {
        VcpuSignalHandle { shared }
    }

    /// Stores 1 into `kvm_run.immediate_exit`: the next (or current, once it leaves the
    /// guest) `KVM_RUN` returns `EINTR`. Lock-free and async-signal-safe.
    pub fn signal_immediate_exit(&self) {
        if self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        self.shared.kicked.store(true, Ordering::Release);
        self.shared.immediate_exit().store(1, Ordering::Release);
    }

    /// Kicks a vcpu that is being closed (where `kick` would do nothing).
    pub(crate) fn kick_closed(shared: &Arc<RunShared>) {
        shared.kicked.store(true, Ordering::Release);
        shared.immediate_exit().store(1, Ordering::Release);
        Self::signal_thread(shared);
    }

    fn signal_thread(shared: &RunShared) {
        let tid = shared.running_tid.load(Ordering::Acquire);
        if tid != 0 {
            // SAFETY: tgkill with our own pid only reaches threads of this process; at
            // worst a thread that just left KVM_RUN gets one no-op signal.
            unsafe {
                libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, kick_signal());
            }
        }
    }

    /// [`Self::signal_immediate_exit`], then a real-time signal to the thread that is in
    /// `KVM_RUN`, if any, so a guest that never exits is interrupted promptly.
    pub fn kick(&self) {
        if self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        self.signal_immediate_exit();
        Self::signal_thread(&self.shared);
    }

    /// A process-wide number for this vcpu, for [`kick_by_id`] from another thread or
    /// JS worker that cannot share the handle itself.
    pub fn id(&self) -> u64 {
        let key = Arc::as_ptr(&self.shared) as usize;
        let mut registry = lock_registry();
        if let Some(id) = registry.by_ptr.get(&key) {
            return *id;
        }
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        registry.by_ptr.insert(key, id);
        registry.by_id.insert(id, Arc::downgrade(&self.shared));
        id
    }
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<u64, Weak<RunShared>>,
    by_ptr: HashMap<usize, u64>,
}

fn lock_registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);
    // A panic while holding this lock cannot leave the maps inconsistent: keep going.
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kicks the vcpu registered under `id` (see [`VcpuSignalHandle::id`]). Returns false if
/// that vcpu no longer exists.
pub fn kick_by_id(id: u64) -> bool {
    let shared = lock_registry().by_id.get(&id).and_then(Weak::upgrade);
    match shared {
        Some(shared) => {
            VcpuSignalHandle { shared }.kick();
            true
        }
        None => false,
    }
}

/// Drops the registry entry of a mapping that is going away.
pub(crate) fn unregister(shared: &Arc<RunShared>) {
    let key = Arc::as_ptr(shared) as usize;
    let mut registry = lock_registry();
    if let Some(id) = registry.by_ptr.remove(&key) {
        registry.by_id.remove(&id);
    }
}
