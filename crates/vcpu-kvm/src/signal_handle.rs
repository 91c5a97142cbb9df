//! `VcpuSignalHandle`: makes a vcpu's `run()` return from another thread or a signal
//! handler, as crosvm's: the trait layer's type, whatever the backend.

use std::sync::{Arc, Weak};

/// What a backend provides behind a [`VcpuSignalHandle`].
pub trait VcpuSignalHandleInner: Send + Sync {
    /// Sets the vcpu's immediate-exit flag: the next (or current, once it leaves the
    /// guest) run returns `EINTR`. Lock-free and async-signal-safe.
    fn signal_immediate_exit(&self);

    /// Wakes the thread inside a run, if any, so the run returns `EINTR` promptly (a
    /// guest that never exits is interrupted too). Asks for no exit by itself: without
    /// [`Self::signal_immediate_exit`] the caller may simply run again.
    fn wake_thread(&self);

    /// The number of the run in progress (runs are counted from 1), or `None` when no
    /// thread is inside the guest: two equal answers some time apart mean one long run.
    fn current_run(&self) -> Option<u64>;

    /// Makes this run and every later one return `EINTR` at once, for good (as an
    /// immediate exit nobody takes back): for a process that is exiting.
    fn stop_for_good(&self);
}

/// Makes a vcpu's `run()` return `EINTR` from any thread or a signal handler. Cheap to
/// clone; keeps what it needs of the vcpu alive; does nothing once the vcpu is closed.
#[derive(Clone)]
pub struct VcpuSignalHandle {
    inner: Arc<dyn VcpuSignalHandleInner>,
}

impl VcpuSignalHandle {
    /// A handle over a backend's implementation.
    pub fn new(inner: Arc<dyn VcpuSignalHandleInner>) -> Self {
        VcpuSignalHandle { inner }
    }

    /// Sets the immediate-exit flag (async-signal-safe); see
    /// [`VcpuSignalHandleInner::signal_immediate_exit`].
    pub fn signal_immediate_exit(&self) {
        self.inner.signal_immediate_exit();
    }

    /// Stops the vcpu: [`Self::signal_immediate_exit`], then wakes the thread inside the
    /// guest, so even a guest that never exits returns at once.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, Vcpu, VmConfig};
    /// # let vm = Kvm::open(None)?.create_vm(VmConfig::default())?;
    /// # vm.add_memory(0, 2 << 20, false, false)?;
    /// # vm.write(0x1000, &[0xeb, 0xfe])?; // jmp $
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.setup_long_mode_at(0x1000, 0x8000)?;
    /// let handle = vcpu.signal_handle();
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(100));
    ///     handle.kick();
    /// });
    /// assert!(vcpu.run().unwrap_err().is_interrupted());
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn kick(&self) {
        self.inner.signal_immediate_exit();
        self.inner.wake_thread();
    }

    /// Stops the vcpu for good: this run and every later one return `EINTR` at once;
    /// see [`VcpuSignalHandleInner::stop_for_good`].
    pub fn stop_for_good(&self) {
        self.inner.stop_for_good();
        self.inner.wake_thread();
    }

    /// Wakes the thread inside the guest without asking for an exit; see
    /// [`VcpuSignalHandleInner::wake_thread`].
    pub fn wake_thread(&self) {
        self.inner.wake_thread();
    }

    /// See [`VcpuSignalHandleInner::current_run`].
    pub fn current_run(&self) -> Option<u64> {
        self.inner.current_run()
    }

    /// A reference that does not keep the vcpu's memory alive (for registries).
    pub fn downgrade(&self) -> WeakVcpuSignalHandle {
        WeakVcpuSignalHandle(Arc::downgrade(&self.inner))
    }
}

/// A [`VcpuSignalHandle`] that does not keep the vcpu alive.
#[derive(Clone)]
pub struct WeakVcpuSignalHandle(Weak<dyn VcpuSignalHandleInner>);

impl WeakVcpuSignalHandle {
    /// The handle, while the vcpu's run state still exists.
    pub fn upgrade(&self) -> Option<VcpuSignalHandle> {
        self.0.upgrade().map(|inner| VcpuSignalHandle { inner })
    }
}
