//! Stopping a running vcpu from anywhere: `VcpuSignalHandle`.
//!
//! A handle shares the vcpu's `kvm_run` mapping. `signal_immediate_exit` only stores 1
//! into `immediate_exit` (async-signal-safe); `kick` also sends a real-time signal to the
//! thread inside `KVM_RUN`, whose no-op handler makes the ioctl return `EINTR`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once, OnceLock, Weak};

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
            signal_tid(tid);
        }
    }

    /// [`Self::signal_immediate_exit`], then a real-time signal to the thread that is in
    /// `KVM_RUN`, if any, so a guest that never exits is interrupted promptly.
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

/// Set once the process is exiting: every run returns `EINTR` at once from then on.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Every live vcpu's mapping, to kick them all at process exit.
static ALL: LazyLock<Mutex<Vec<Weak<RunShared>>>> = LazyLock::new(Mutex::default);

/// How often a vcpu that stays inside the guest is woken (without an exit being
/// requested), if it opted in, so its caller can check that its thread is still wanted;
/// see [`KvmVcpu::set_liveness_tick`](super::KvmVcpu::set_liveness_tick) and
/// [`KvmVcpu::interrupted_by_request`](super::KvmVcpu::interrupted_by_request).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Records a new vcpu for [`shutdown`] and the tick.
pub(crate) fn register(shared: &Arc<RunShared>) {
    static TICKER: Once = Once::new();
    let mut all = ALL.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(shared));
    TICKER.call_once(|| {
        // Best effort: without the thread, runs are simply never ticked.
        let _ = std::thread::Builder::new().name("vcpu-tick".into()).spawn(tick);
    });
}

/// Every [`TICK`], signals the threads whose current `KVM_RUN` call began before the
/// last tick. The run returns `EINTR` with no exit requested; callers re-enter the guest.
fn tick() {
    // (mapping, thread, run number) of each vcpu inside the guest at the last tick.
    let mut seen: Vec<(usize, i32, u64)> = Vec::new();
    loop {
        std::thread::sleep(TICK);
        let all = ALL.lock().unwrap_or_else(|p| p.into_inner());
        let running: Vec<(usize, i32, u64)> = all
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.tick.load(Ordering::Acquire))
            .map(|s| {
                (
                    Arc::as_ptr(&s) as usize,
                    s.running_tid.load(Ordering::Acquire),
                    s.runs.load(Ordering::Relaxed),
                )
            })
            .filter(|(_, tid, _)| *tid != 0)
            .collect();
        drop(all);
        for entry in &running {
            if seen.contains(entry) {
                signal_tid(entry.1);
            }
        }
        seen = running;
    }
}

/// Whether [`shutdown`] was called.
pub fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::Acquire)
}

/// For process exit: kicks every vcpu out of the guest, and makes every later run
/// return `EINTR` at once, so no thread stays stuck in `KVM_RUN` (Node joins its worker
/// threads on exit).
pub fn shutdown() {
    SHUTDOWN.store(true, Ordering::Release);
    let all = ALL.lock().unwrap_or_else(|p| p.into_inner());
    for shared in all.iter().filter_map(Weak::upgrade) {
        VcpuSignalHandle::kick_closed(&shared);
    }
}

/// Sends the kick signal to thread `tid` of this process.
fn signal_tid(tid: i32) {
    // SAFETY: tgkill with our own pid only reaches threads of this process; at worst a
    // thread that just left KVM_RUN gets one no-op signal.
    unsafe {
        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, kick_signal());
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
