//! `KvmVcpu`: the `Vcpu` trait over a KVM vcpu fd and our own `kvm_run` mapping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::*;
use kvm_ioctls::VcpuFd;

use super::exits::RecordSlot;
use super::kick::{VcpuThread, Want};
use super::run::RunShared;
use super::run_hook::RawOutcome;
use super::signal::{install_kick_handler, KvmSignalHandle};
use super::vm::KvmVm;
use super::{arch, ioctls};
use crate::error::{Context, Error, Result};
use crate::record::Pending;
use crate::{HypercallAbi, IoParams, Vcpu, VcpuExit, VcpuSignalHandle};

/// A KVM vcpu. `Send + Sync`; `run()` and the `handle_*` methods belong on one thread
/// at a time (a second concurrent `run()` is refused with `EBUSY`).
pub struct KvmVcpu {
    id: usize,
    pub(crate) fd: VcpuFd,
    shared: Arc<RunShared>,
    pub(crate) vm: KvmVm,
    pub(crate) records: RecordSlot,
    /// Whether the last interrupted run was asked to stop (written by the thread in `run()`).
    requested: AtomicBool,
    /// The user's guest-debug settings (a debugger's replace them while it is attached).
    own_debug: std::sync::Mutex<kvm_guest_debug>,
    /// What every signal handle of this vcpu shares (one, so weak references to it, as
    /// in registries of handles, live as long as the vcpu).
    handle: Arc<KvmSignalHandle>,
}

impl KvmVcpu {
    /// A vcpu over `fd`; `restoring`: a snapshot's state (CPUID included) follows at once.
    pub(crate) fn new(id: usize, fd: VcpuFd, vm: KvmVm, restoring: bool) -> Result<Self> {
        install_kick_handler()?;
        let shared = Arc::new(RunShared::map(&fd, vm.shared().run_size)?);
        let vcpu = KvmVcpu {
            id,
            fd,
            vm,
            records: RecordSlot::new(),
            requested: AtomicBool::new(false),
            own_debug: std::sync::Mutex::new(kvm_guest_debug::default()),
            handle: Arc::new(KvmSignalHandle(shared.clone())),
            shared,
        };
        arch::init_vcpu(&vcpu, restoring)?;
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
        self.shared.lifecycle.is_closed()
    }

    /// Closes the vcpu: later calls fail with `ECLOSED` and handles do nothing; a run in
    /// progress on another thread is kicked out, and this returns once it has left (or
    /// after [`super::CLOSE_WAIT`]; true if it left). The fd itself is released when the
    /// `KvmVcpu` is dropped. Idempotent. [`KvmVm::close`] closes its vcpus with this too.
    pub fn close(&self) -> bool {
        close_all(&[self])
    }

    /// Keeps `run()` out of this vcpu (it answers `EBUSY`) until the guard goes, for a
    /// snapshot; refused with `EBUSY` while the vcpu runs or an exit waits for its
    /// handler (nothing may be half-done in a saved state).
    pub(crate) fn hold(self: &Arc<Self>, op: &'static str) -> Result<HeldVcpu> {
        self.shared.lifecycle.enter(op, self.id, true)?;
        let held = HeldVcpu(self.clone());
        match self.pending() {
            Pending::None => Ok(held),
            Pending::Handling => Err(self.busy(op, "is inside one of its exit handlers".into())),
            p => Err(self.busy(
                op,
                format!("has an exit waiting for its handler ({p:?}): handle it or run again first"),
            )),
        }
    }

    /// As [`KvmVcpu::hold`], for a reset: an exit waiting for its handler is dropped
    /// (answered as given up) instead of refused. A handler running still refuses it.
    pub(crate) fn hold_dropping_exit(self: &Arc<Self>, op: &'static str) -> Result<HeldVcpu> {
        self.shared.lifecycle.enter(op, self.id, true)?;
        let held = HeldVcpu(self.clone());
        self.new_exit();
        Ok(held)
    }

    #[cold]
    fn busy(&self, op: &'static str, why: String) -> Error {
        Error::new(
            crate::ErrorCode::Errno(libc::EBUSY),
            op,
            format!("{op}: vcpu {} {why}", self.id),
        )
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
    /// One `KVM_RUN`, its thread published for kicks.
    #[inline]
    pub(super) fn enter(&self, thread: VcpuThread) -> RawOutcome {
        // Once, not per use: each atomic below would make the compiler read it again.
        let shared: &RunShared = &self.shared;
        shared.kick.publish_thread(thread);
        let result = loop {
            match ioctls::run(&self.fd) {
                // An application processor left wait-for-SIPI (it accepted INIT or SIPI
                // while blocked): KVM asks for the run to be repeated, and Firecracker
                // and crosvm do just that. Each one follows a wake-up, never a spin.
                Err(e) if e.errno() == libc::EAGAIN => continue,
                other => break other,
            }
        };
        shared.kick.withdraw_thread();
        // Some KVMs report a signal as a successful run with exit reason KVM_EXIT_INTR:
        // one way for both, an interrupted run.
        match result {
            Ok(()) if shared.exit_reason() == KVM_EXIT_INTR => Err(vmm_sys_util::errno::Error::new(libc::EINTR)),
            other => other,
        }
    }

    /// Whether a run's outcome is the VM's run hook's (see `run_hook`): a debug exit
    /// while a hook is set, or its kick. (A debugger that stops the guest kicks every
    /// vcpu, so a vcpu entering the guest then comes straight back here: the common path
    /// pays one compare.)
    #[inline]
    pub(crate) fn outcome_is_hooks(&self, result: &RawOutcome) -> bool {
        match result {
            Ok(()) => self.kvm_run().exit_reason == KVM_EXIT_DEBUG && self.vm.shared().hook.is_set(),
            Err(_) => self.shared.kick.wanted_by(Want::Hook),
        }
    }

    /// Hands the outcome to the run hook, which returns the first one that is the
    /// caller's.
    #[cold]
    #[inline(never)]
    fn run_hook(&self, result: RawOutcome) -> Result<RawOutcome> {
        if let Some(hook) = self.vm.shared().hook.get() {
            return hook.take(self, result);
        }
        // The hook went meanwhile: its kick is void, and a debug exit is the caller's.
        if self.take_hook_kick() && result.is_err() {
            return Ok(self.enter(VcpuThread::current()));
        }
        Ok(result)
    }

    /// The guest-debug settings the user gave (restored when a debugger detaches).
    // The GDB stub (x86 only so far) is the one hook that owns guest debug.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn own_guest_debug(&self) -> kvm_guest_debug {
        *self.own_debug.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the user's guest-debug settings; false if a run hook (a debugger) owns
    /// guest debug now (they are applied when it goes).
    // arm64 has no `set_guest_debug` of its own yet.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn keep_own_guest_debug(&self, debug: kvm_guest_debug) -> bool {
        *self.own_debug.lock().unwrap_or_else(|p| p.into_inner()) = debug;
        !self.vm.shared().hook.is_set()
    }

    /// Guest-debug settings from a debugger (`KVM_SET_GUEST_DEBUG`); the vcpu's own come
    /// back when it goes.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn set_debugger_guest_debug(&self, debug: &kvm_guest_debug) -> Result<()> {
        self.fd("gdb")?.set_guest_debug(debug).op("gdb")
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
        self.0.shared.lifecycle.leave();
    }
}

impl KvmVcpu {
    /// Holds the vcpu out of `run()`, closed or not, kicking a run in progress; `None` if
    /// it did not leave within [`super::CLOSE_WAIT`].
    pub(crate) fn hold_out_of_run(&self) -> Option<super::lifecycle::LifecycleHold<'_>> {
        let deadline = Instant::now() + super::CLOSE_WAIT;
        loop {
            if let Some(held) = self.shared.lifecycle.hold_any() {
                return Some(held);
            }
            self.shared.kick.kick(Want::Kick);
            if !wait_until_left(&[self], deadline) {
                return None;
            }
        }
    }
}

/// Closes `vcpus` (marks each closed and kicks it) and waits, holding no lock, until none
/// is inside `run()` any more: true if they all left within [`super::CLOSE_WAIT`].
pub(crate) fn close_all(vcpus: &[&KvmVcpu]) -> bool {
    for v in vcpus {
        v.shared.lifecycle.close();
        v.shared.kick.kick(Want::Kick);
    }
    wait_until_left(vcpus, Instant::now() + super::CLOSE_WAIT)
}

/// Waits until none of `vcpus` is inside `run()` (already asked to leave), signalling
/// their threads again every millisecond; false if one is still inside at `deadline`.
fn wait_until_left(vcpus: &[&KvmVcpu], deadline: Instant) -> bool {
    while vcpus.iter().any(|v| v.shared.lifecycle.is_busy()) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
        // A thread between its check and KVM_RUN saw the 1; one inside gets a signal.
        for v in vcpus {
            v.shared.kick.wake();
        }
    }
    true
}

impl KvmVcpu {
    /// `run()` without handing the exit back: its kind is in the record and the whole
    /// exit in [`KvmVcpu::last_exit`]. The per-exit path of a caller that reads the
    /// record in place, which then moves no `VcpuExit` around.
    pub fn run_in_place(&self) -> Result<()> {
        self.run_in_place_on(VcpuThread::current())
    }

    /// [`KvmVcpu::run_in_place`] from `thread`, the calling thread, taken once by a
    /// caller that runs the vcpu from it over and over.
    pub fn run_in_place_on(&self, thread: VcpuThread) -> Result<()> {
        const OP: &str = "run";
        arch::before_run(self)?;
        let lifecycle = &self.shared.lifecycle;
        // Refused while closed, held, or inside one of its own handlers.
        lifecycle.enter(OP, self.id, false)?;
        // A run ends whatever exit was pending.
        self.new_exit();
        let mut result = self.enter(thread);
        if self.outcome_is_hooks(&result) {
            result = match self.run_hook(result) {
                Ok(r) => r,
                Err(e) => {
                    // Held by a debugger past its patience, or closed meanwhile.
                    self.set_last(VcpuExit::Intr);
                    self.requested.store(false, Ordering::Relaxed);
                    lifecycle.leave();
                    return Err(e);
                }
            };
        }
        // The exit is decoded before the vcpu is left: whoever enters next (or un-lends
        // the record) finds it complete.
        let outcome = match result {
            Ok(()) => {
                self.decode_exit();
                Ok(())
            }
            Err(e) => {
                self.set_last(VcpuExit::Intr);
                if e.errno() == libc::EINTR {
                    // A kick is consumed by the run it interrupted.
                    self.requested
                        .store(self.shared.kick.take_interruption(), Ordering::Relaxed);
                }
                Err(Error::errno(OP, e.errno()))
            }
        };
        lifecycle.leave();
        outcome
    }
}

impl KvmVcpu {
    /// The one place that decides what an interrupted run means, for every loop that
    /// runs a vcpu (the binding's `run`, its native threads, the benchmarks): calls
    /// `once` (one run, however that loop runs) until it gives an exit or an error. An
    /// interruption someone asked for (a kick, the immediate exit) ends it as
    /// `requested`; a stray one (a signal for another purpose, a liveness tick, a
    /// debugger's wake-up) enters the guest again, while `go_on()` says the caller
    /// still wants it run, and is given back as the error otherwise.
    pub fn run_until_settled<T>(
        &self,
        go_on: &dyn Fn() -> bool,
        mut once: impl FnMut() -> Result<T>,
        requested: T,
    ) -> Result<T> {
        loop {
            match once() {
                Err(e) if e.is_interrupted() && self.interrupted_by_request() => return Ok(requested),
                Err(e) if e.is_interrupted() && go_on() => continue,
                other => return other,
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
        // A run hook's pending kick outlives the user's "no": it holds the vcpu.
        if exit {
            self.shared.kick.request(Want::User);
        } else {
            self.shared.kick.withdraw(Want::User);
            self.shared.kick.withdraw(Want::Kick);
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
