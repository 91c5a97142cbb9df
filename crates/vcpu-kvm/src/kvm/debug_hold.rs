//! What a debugger needs from the run path, whatever loop runs the vcpus: to hold every
//! vcpu of a VM inside `run()` while the guest is stopped, and to take the debug exits
//! (breakpoints, single steps) before user code sees them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_guest_debug;

use super::kick::Want;
use super::vcpu::KvmVcpu;
use super::vm::KvmVm;
use crate::error::{Context, Error, ErrorCode, Result};
use crate::{Vcpu, VcpuExit};

/// How long a held vcpu waits before `run()` returns a spurious `EINTR`, so that the
/// caller can check that its thread is still wanted (a worker being terminated, process
/// exit) and run again, to be held again.
const PARK: Duration = Duration::from_millis(100);

/// One per VM.
#[derive(Default)]
pub(crate) struct DebugHold {
    /// A debugger is attached: `run()` looks at the rest (one load per run otherwise).
    attached: AtomicBool,
    state: Mutex<HoldState>,
    changed: Condvar,
}

#[derive(Default)]
struct HoldState {
    /// Every vcpu must stay out of the guest.
    halted: bool,
    /// Debug exits the debugger has not taken yet: (vcpu id, exit).
    stops: VecDeque<(usize, VcpuExit)>,
    /// vcpus that stay out of the guest while the others run (gdb's scheduler locking:
    /// stepping one thread).
    frozen: BTreeSet<usize>,
}

impl DebugHold {
    pub(crate) fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, HoldState> {
        // Each update is a flag or a queue push: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the guest is stopped (a vcpu created now must not enter it).
    pub(crate) fn halted(&self) -> bool {
        self.attached() && self.lock().halted
    }

    /// Before `KVM_RUN`: waits while the guest is stopped. After [`PARK`] it gives up
    /// with an `EINTR` that was not requested; callers run again.
    pub(crate) fn gate(&self, vcpu: &KvmVcpu) -> Result<()> {
        let deadline = Instant::now() + PARK;
        let mut state = self.lock();
        while (state.halted || state.frozen.contains(&vcpu.id())) && self.attached() {
            if vcpu.is_closed() {
                return Err(Error::closed("run", "vcpu"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(
                    ErrorCode::Errno(libc::EINTR),
                    "run",
                    "run: held by the debugger",
                ));
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(())
    }

    /// A debug exit of vcpu `id`, for the debugger (the guest was halted already).
    pub(crate) fn report(&self, id: usize, exit: VcpuExit) {
        let mut state = self.lock();
        state.stops.push_back((id, exit));
        self.changed.notify_all();
    }
}

/// The debugger's side, for the GDB stub (`vmm::gdb`).
impl KvmVm {
    fn hold(&self) -> &DebugHold {
        &self.shared().debug
    }

    /// A debugger attaches: debug exits are its own from now on, and the guest stops.
    pub fn debug_attach(&self) {
        self.hold().attached.store(true, Ordering::Release);
        self.debug_halt();
    }

    /// The debugger goes: each vcpu gets back its own guest-debug settings and the guest
    /// runs on.
    pub fn debug_detach(&self) {
        for vcpu in self.vcpus() {
            let own = vcpu.own_guest_debug();
            if let Ok(fd) = vcpu.fd("debugDetach") {
                let _ = fd.set_guest_debug(&own);
            }
        }
        let hold = self.hold();
        hold.attached.store(false, Ordering::Release);
        let mut state = hold.lock();
        state.halted = false;
        state.stops.clear();
        state.frozen.clear();
        hold.changed.notify_all();
    }

    /// Stops the guest: every vcpu inside `KVM_RUN` is kicked out, and every `run()`
    /// holds its vcpu until [`KvmVm::debug_resume`].
    pub fn debug_halt(&self) {
        let hold = self.hold();
        hold.lock().halted = true;
        for vcpu in self.vcpus() {
            vcpu.kick_for_debugger();
        }
    }

    /// Whether a debugger is attached.
    pub fn debug_attached(&self) -> bool {
        self.hold().attached()
    }

    /// Lets the guest run again, but for the vcpus in `frozen`. Stops not yet taken are
    /// dropped: a vcpu that hit a breakpoint as the guest stopped hits it again (a debug
    /// trap on execution fires before the instruction).
    pub fn debug_resume(&self, frozen: BTreeSet<usize>) {
        let hold = self.hold();
        let mut state = hold.lock();
        state.halted = false;
        state.stops.clear();
        state.frozen = frozen;
        hold.changed.notify_all();
    }

    /// The next debug exit, waiting up to `timeout`.
    pub fn debug_next_stop(&self, timeout: Duration) -> Option<(usize, VcpuExit)> {
        let hold = self.hold();
        let mut state = hold.lock();
        if state.stops.is_empty() {
            state = hold
                .changed
                .wait_timeout(state, timeout)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        state.stops.pop_front()
    }

    /// Whether no vcpu is inside `KVM_RUN` (after [`KvmVm::debug_halt`], none will enter).
    pub fn debug_all_stopped(&self) -> bool {
        self.vcpus().iter().all(|v| !v.run_shared().kick.thread_inside())
    }

    /// The live vcpus, by id.
    pub fn vcpus(&self) -> Vec<Arc<KvmVcpu>> {
        let mut vcpus: Vec<_> = match self.lock("vcpus") {
            Ok(state) => state
                .vcpus
                .iter()
                .filter_map(|w| w.upgrade())
                .filter(|v| !v.is_closed())
                .collect(),
            Err(_) => Vec::new(),
        };
        vcpus.sort_by_key(|v| v.id());
        vcpus
    }
}

/// The vcpu's side.
impl KvmVcpu {
    /// Kicks the vcpu out of `KVM_RUN` for the debugger (or keeps it from entering): `run()`
    /// takes the kick itself (it never reaches the caller) and holds the vcpu.
    pub(crate) fn kick_for_debugger(&self) {
        self.run_shared().kick.kick(Want::Debugger);
    }

    /// Takes back a debugger's kick, if one is pending: `immediate_exit` returns to what
    /// the user and other kickers asked for. True if there was one.
    pub(crate) fn take_debugger_kick(&self) -> bool {
        self.run_shared().kick.withdraw(Want::Debugger)
    }

    /// Guest-debug settings from the debugger (`KVM_SET_GUEST_DEBUG`); the vcpu's own
    /// come back when it detaches.
    pub fn set_debugger_guest_debug(&self, debug: &kvm_guest_debug) -> Result<()> {
        self.fd("gdb")?.set_guest_debug(debug).op("gdb")
    }
}
