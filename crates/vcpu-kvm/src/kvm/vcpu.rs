//! `KvmVcpu`: the `Vcpu` trait over a KVM vcpu fd and our own `kvm_run` mapping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kvm_bindings::*;
use kvm_ioctls::VcpuFd;

use super::exits::RecordSlot;
use super::run::RunShared;
use super::signal::{install_kick_handler, request_exit, wake, KvmSignalHandle};
use super::vm::KvmVm;
use super::{arch, ioctls};
use crate::error::{Context, Error, Result};
use crate::record::Pending;
use crate::{HypercallAbi, IoParams, Vcpu, VcpuExit, VcpuSignalHandle};

/// The kernel thread id of the calling thread, which `run()` publishes for kicks. Asked
/// of the kernel once per thread and vcpu: `pthread_self` (one load) says whether the
/// thread is the one that ran this vcpu last.
struct ThreadId {
    pthread: std::sync::atomic::AtomicUsize,
    tid: std::sync::atomic::AtomicI32,
}

impl ThreadId {
    fn new() -> Self {
        ThreadId {
            pthread: std::sync::atomic::AtomicUsize::new(0),
            tid: std::sync::atomic::AtomicI32::new(0),
        }
    }

    fn current(&self) -> i32 {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        if self.pthread.load(Ordering::Relaxed) == me {
            return self.tid.load(Ordering::Relaxed);
        }
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) as i32 };
        self.tid.store(tid, Ordering::Relaxed);
        self.pthread.store(me, Ordering::Relaxed);
        tid
    }
}

/// A KVM vcpu. `Send + Sync`; `run()` and the `handle_*` methods belong on one thread
/// at a time (a second concurrent `run()` is refused with `EBUSY`).
pub struct KvmVcpu {
    id: usize,
    pub(crate) fd: VcpuFd,
    shared: Arc<RunShared>,
    pub(crate) vm: KvmVm,
    pub(crate) records: RecordSlot,
    running: AtomicBool,
    requested: AtomicBool,
    /// What the user last passed to `set_immediate_exit`.
    immediate_wanted: AtomicBool,
    /// The user's guest-debug settings (a debugger's replace them while it is attached).
    own_debug: std::sync::Mutex<kvm_guest_debug>,
    thread: ThreadId,
    /// What every signal handle of this vcpu shares (one, so weak references to it, as
    /// in registries of handles, live as long as the vcpu).
    handle: Arc<KvmSignalHandle>,
}

impl KvmVcpu {
    pub(crate) fn new(id: usize, fd: VcpuFd, vm: KvmVm) -> Result<Self> {
        install_kick_handler()?;
        let shared = Arc::new(RunShared::map(&fd, vm.shared().run_size)?);
        let vcpu = KvmVcpu {
            id,
            fd,
            vm,
            records: RecordSlot::new(),
            running: AtomicBool::new(false),
            requested: AtomicBool::new(false),
            immediate_wanted: AtomicBool::new(false),
            own_debug: std::sync::Mutex::new(kvm_guest_debug::default()),
            thread: ThreadId::new(),
            handle: Arc::new(KvmSignalHandle(shared.clone())),
            shared,
        };
        arch::init_vcpu(&vcpu)?;
        Ok(vcpu)
    }

    pub(crate) fn run_shared(&self) -> &Arc<RunShared> {
        &self.shared
    }

    /// After `run()` returned `EINTR`: whether an exit was asked for (immediate exit, a
    /// kick), as opposed to a stray signal or a thread woken without one, after which a
    /// caller may simply run again.
    pub fn interrupted_by_request(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// The VM this vcpu belongs to.
    pub fn vm(&self) -> &KvmVm {
        &self.vm
    }

    /// True once closed (by [`KvmVcpu::close`] or by closing its VM).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Marks the vcpu closed, kicking a run in progress: later calls fail with `ECLOSED`,
    /// handles do nothing. The fd itself is released when the `KvmVcpu` is dropped.
    /// Idempotent.
    pub fn close(&self) {
        // Kick first: a run in progress on another thread returns at once.
        request_exit(&self.shared);
        wake(&self.shared);
        self.shared.closed.store(true, Ordering::Release);
        // A closed vcpu has no exit for a handler to complete.
        self.set_pending(Pending::None);
    }

    /// Keeps `run()` out of this vcpu (it answers `EBUSY`) until the guard goes, for a
    /// snapshot; refused with `EBUSY` while the vcpu runs or an exit waits for its
    /// handler (nothing may be half-done in a saved state).
    pub(crate) fn hold(self: &Arc<Self>, op: &'static str) -> Result<HeldVcpu> {
        let busy = |why: String| {
            Error::new(
                crate::ErrorCode::Errno(libc::EBUSY),
                op,
                format!("{op}: vcpu {} {why}", self.id),
            )
        };
        if self.running.swap(true, Ordering::Acquire) {
            return Err(busy("is inside run()".into()));
        }
        let held = HeldVcpu(self.clone());
        match self.pending() {
            Pending::None => Ok(held),
            Pending::Handling => Err(busy("is inside one of its exit handlers".into())),
            p => Err(busy(format!(
                "has an exit waiting for its handler ({p:?}): handle it or run again first"
            ))),
        }
    }

    /// The vcpu fd, or `ECLOSED`.
    pub(crate) fn fd(&self, op: &'static str) -> Result<&VcpuFd> {
        if self.is_closed() {
            return Err(Error::closed(op, "vcpu"));
        }
        Ok(&self.fd)
    }

    /// The `kvm_run` structure. Only the vcpu's own thread reads or writes its union.
    // kvm_run is kernel-shared memory outside Rust's ownership, used by one thread at a
    // time (the vcpu's); callers hold one such borrow at a time.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn kvm_run(&self) -> &mut kvm_run {
        // SAFETY: the mapping is live for `self`'s lifetime; the union is only accessed
        // from the thread that runs the vcpu, between runs (the kernel writes it only
        // inside KVM_RUN, which that same thread is not in).
        unsafe { &mut *self.shared.run() }
    }

    /// The whole `kvm_run` mapping (the struct and the PIO data page after it), for
    /// zero-copy views of exit data: `(start, length)`.
    pub fn run_mapping(&self) -> (Arc<RunShared>, usize) {
        (self.shared.clone(), self.shared.len())
    }
}

impl KvmVcpu {
    /// One `KVM_RUN`, published for kicks.
    #[inline]
    fn enter(&self, tid: i32) -> std::result::Result<(), vmm_sys_util::errno::Error> {
        // Once, not per use: each atomic below would make the compiler read it again.
        let shared: &RunShared = &self.shared;
        shared.runs.fetch_add(1, Ordering::Relaxed);
        shared.running_tid.store(tid, Ordering::Release);
        let result = ioctls::run(&self.fd);
        shared.running_tid.store(0, Ordering::Release);
        // Some KVMs report a signal as a successful run with exit reason KVM_EXIT_INTR:
        // one way for both, an interrupted run.
        match result {
            Ok(()) if shared.exit_reason() == KVM_EXIT_INTR => Err(vmm_sys_util::errno::Error::new(libc::EINTR)),
            other => other,
        }
    }

    /// Whether a run's outcome is a debugger's: a debug exit while one is attached, or
    /// its kick. (A debugger that stops the guest kicks every vcpu, so a vcpu entering
    /// the guest then comes straight back here: the common path pays one compare.)
    #[inline]
    fn for_debugger(&self, result: &std::result::Result<(), vmm_sys_util::errno::Error>) -> bool {
        match result {
            Ok(()) => self.kvm_run().exit_reason == KVM_EXIT_DEBUG && self.vm.shared().debug.attached(),
            Err(_) => self.shared.debug_kick.load(Ordering::Acquire),
        }
    }

    /// Runs on while the outcome is the debugger's: a debug exit stops the guest and is
    /// reported to it, a kick is taken back; then the vcpu waits while the guest is
    /// stopped and enters it again.
    #[cold]
    #[inline(never)]
    fn run_for_debugger(
        &self,
        tid: i32,
        mut result: std::result::Result<(), vmm_sys_util::errno::Error>,
    ) -> Result<std::result::Result<(), vmm_sys_util::errno::Error>> {
        let debug = &self.vm.shared().debug;
        while self.for_debugger(&result) {
            if result.is_ok() {
                // Stop the others first: once the stop is visible the debugger may
                // resume at once, and nothing may halt the guest after it.
                // Not `decode_exit`: it stays inlined in `run()` when called once.
                let exit = arch::debug_exit(self.kvm_run());
                self.set_last(exit);
                self.vm.debug_halt();
                debug.report(self.id, exit);
            }
            self.take_debugger_kick();
            if let Err(e) = debug.gate(self) {
                // Still held (or closed): the next `run()` must come back here first.
                self.kick_for_debugger();
                return Err(e);
            }
            // A kick that came while waiting stays: the guest may have been stopped again
            // since, and then this entry must come straight back.
            result = self.enter(tid);
        }
        Ok(result)
    }

    /// The user's own `immediate_exit` wish (a debugger's kick sets it too).
    pub(crate) fn immediate_exit_wanted(&self) -> bool {
        self.immediate_wanted.load(Ordering::Acquire)
    }

    /// The guest-debug settings the user gave (restored when a debugger detaches).
    pub(crate) fn own_guest_debug(&self) -> kvm_guest_debug {
        *self.own_debug.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the user's guest-debug settings; false if a debugger owns guest debug
    /// now (they are applied when it detaches).
    // arm64 has no `set_guest_debug` of its own yet.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn keep_own_guest_debug(&self, debug: kvm_guest_debug) -> bool {
        *self.own_debug.lock().unwrap_or_else(|p| p.into_inner()) = debug;
        !self.vm.shared().debug.attached()
    }
}

/// A vcpu kept out of `run()`; see [`KvmVcpu::hold`].
pub(crate) struct HeldVcpu(Arc<KvmVcpu>);

impl std::ops::Deref for HeldVcpu {
    type Target = KvmVcpu;
    fn deref(&self) -> &KvmVcpu {
        &self.0
    }
}

impl Drop for HeldVcpu {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

impl KvmVcpu {
    /// `run()` without handing the exit back: its kind is in the record and the whole
    /// exit in [`KvmVcpu::last_exit`]. The per-exit path of a caller that reads the
    /// record in place, which then moves no `VcpuExit` around.
    pub fn run_in_place(&self) -> Result<()> {
        const OP: &str = "run";
        if self.is_closed() {
            return Err(Error::closed(OP, "vcpu"));
        }
        if self.running.swap(true, Ordering::Acquire) {
            return Err(Error::new(
                crate::ErrorCode::Errno(libc::EBUSY),
                OP,
                "this vcpu is already running on another thread",
            ));
        }
        // A run ends whatever exit was pending; a run from inside a handler is refused.
        if self.in_handler() {
            self.running.store(false, Ordering::Release);
            return Err(self.refuse_in_handler(OP));
        }
        self.set_pending(Pending::None);
        let tid = self.thread.current();
        let mut result = self.enter(tid);
        if self.for_debugger(&result) {
            result = match self.run_for_debugger(tid, result) {
                Ok(r) => r,
                Err(e) => {
                    // Held by a debugger past its patience, or closed meanwhile.
                    self.running.store(false, Ordering::Release);
                    self.set_last(VcpuExit::Intr);
                    self.requested.store(false, Ordering::Relaxed);
                    return Err(e);
                }
            };
        }
        self.running.store(false, Ordering::Release);
        match result {
            Ok(()) => {
                self.decode_exit();
                Ok(())
            }
            Err(e) => {
                self.set_last(VcpuExit::Intr);
                if e.errno() == libc::EINTR {
                    let kicked = self.shared.kicked.swap(false, Ordering::AcqRel);
                    let immediate = self.shared.immediate_exit().load(Ordering::Acquire) != 0;
                    self.requested.store(kicked || immediate, Ordering::Relaxed);
                    if kicked {
                        // A kick is consumed by the run it interrupted.
                        self.shared.immediate_exit().store(0, Ordering::Release);
                    }
                }
                Err(Error::errno(OP, e.errno()))
            }
        }
    }
}

impl Vcpu for KvmVcpu {
    fn run(&self) -> Result<VcpuExit> {
        self.run_in_place().map(|()| self.last_exit())
    }

    fn id(&self) -> usize {
        self.id
    }

    fn set_immediate_exit(&self, exit: bool) {
        self.immediate_wanted.store(exit, Ordering::Release);
        // A debugger's pending kick outlives the user's "no": it holds the vcpu.
        let set = exit || self.shared.debug_kick.load(Ordering::Acquire);
        self.shared.immediate_exit().store(set as u8, Ordering::Release);
        if !exit {
            self.shared.kicked.store(false, Ordering::Release);
        }
    }

    fn signal_handle(&self) -> VcpuSignalHandle {
        VcpuSignalHandle::new(self.handle.clone())
    }

    fn handle_mmio(&self, handle_fn: &mut dyn FnMut(IoParams) -> Result<()>) -> Result<()> {
        self.handle_access(Pending::Mmio, "handleMmio", handle_fn)
    }

    fn handle_io(&self, handle_fn: &mut dyn FnMut(IoParams)) -> Result<()> {
        self.handle_access(Pending::Io, "handleIo", &mut |params| {
            handle_fn(params);
            Ok(())
        })
    }

    fn on_suspend(&self) -> Result<()> {
        arch::on_suspend(self.fd("onSuspend")?)
    }

    unsafe fn enable_raw_capability(&self, cap: u32, args: &[u64; 4]) -> Result<()> {
        let enable = kvm_enable_cap {
            cap,
            args: *args,
            ..Default::default()
        };
        ioctls::enable_cap(self.fd("enableRawCapability")?, &enable).op("enableRawCapability")
    }

    fn handle_hypercall(&self, handle_fn: &mut dyn FnMut(&mut HypercallAbi) -> Result<()>) -> Result<()> {
        self.handle_call(handle_fn)
    }
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        self.close();
    }
}
