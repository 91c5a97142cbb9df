//! The debugger's hold on a VM's vcpus, as the VM's run hook (`kvm::run_hook`): while
//! the guest is stopped every vcpu waits inside its own `run()`, whatever loop runs it,
//! and debug exits (breakpoints, single steps) come here instead of to user code.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::kvm::run_hook::{RawOutcome, RunHook};
use crate::kvm::{KvmVcpu, KvmVm};
use crate::{Vcpu, VcpuExit};

/// How long a held vcpu waits before `run()` returns a spurious `EINTR`, so that the
/// caller can check that its thread is still wanted (a worker being terminated, process
/// exit) and run again, to be held again.
const PARK: Duration = Duration::from_millis(100);

/// One per debugger (a GDB server).
#[derive(Default)]
pub(super) struct DebugHold {
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
    fn lock(&self) -> MutexGuard<'_, HoldState> {
        // Each update is a flag or a queue push: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The debugger attaches: debug exits are its own from now on, and the guest stops.
    pub(super) fn attach(self: &Arc<Self>, vm: &KvmVm) {
        vm.set_run_hook(Some(self.clone()));
        self.halt(vm);
    }

    /// The debugger goes: each vcpu gets back its own guest-debug settings and the guest
    /// runs on.
    pub(super) fn detach(&self, vm: &KvmVm) {
        for vcpu in vm.vcpus() {
            let own = vcpu.own_guest_debug();
            let _ = vcpu.set_debugger_guest_debug(&own);
        }
        vm.set_run_hook(None);
        let mut state = self.lock();
        state.halted = false;
        state.stops.clear();
        state.frozen.clear();
        self.changed.notify_all();
    }

    /// Stops the guest: every vcpu inside `KVM_RUN` is kicked out, and every `run()`
    /// holds its vcpu until [`DebugHold::resume`].
    pub(super) fn halt(&self, vm: &KvmVm) {
        self.lock().halted = true;
        for vcpu in vm.vcpus() {
            vcpu.kick_for_hook();
        }
    }

    /// Lets the guest run again, but for the vcpus in `frozen`. Stops not yet taken are
    /// dropped: a vcpu that hit a breakpoint as the guest stopped hits it again (a debug
    /// trap on execution fires before the instruction).
    pub(super) fn resume(&self, frozen: BTreeSet<usize>) {
        let mut state = self.lock();
        state.halted = false;
        state.stops.clear();
        state.frozen = frozen;
        self.changed.notify_all();
    }

    /// The next debug exit, waiting up to `timeout`.
    pub(super) fn next_stop(&self, timeout: Duration) -> Option<(usize, VcpuExit)> {
        let mut state = self.lock();
        if state.stops.is_empty() {
            state = self
                .changed
                .wait_timeout(state, timeout)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        state.stops.pop_front()
    }

    /// Whether no vcpu is inside `KVM_RUN` (after [`DebugHold::halt`], none will enter).
    pub(super) fn all_stopped(vm: &KvmVm) -> bool {
        vm.vcpus().iter().all(|v| !v.in_guest())
    }

    /// Before `KVM_RUN`: waits while the guest is stopped. After [`PARK`] it gives up
    /// with an `EINTR` that was not requested; callers run again.
    fn gate(&self, vcpu: &KvmVcpu) -> Result<()> {
        let deadline = Instant::now() + PARK;
        let mut state = self.lock();
        while state.halted || state.frozen.contains(&vcpu.id()) {
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
}

impl RunHook for DebugHold {
    /// A debug exit stops the guest and is reported to the debugger, a kick is taken
    /// back; then the vcpu waits while the guest is stopped and enters it again.
    fn take(&self, vcpu: &KvmVcpu, mut result: RawOutcome) -> Result<RawOutcome> {
        while vcpu.outcome_is_hooks(&result) {
            if result.is_ok() {
                // Stop the others first: once the stop is visible the debugger may
                // resume at once, and nothing may halt the guest after it.
                let exit = vcpu.take_debug_exit();
                self.halt(vcpu.vm());
                let mut state = self.lock();
                state.stops.push_back((vcpu.id(), exit));
                self.changed.notify_all();
            }
            vcpu.take_hook_kick();
            if let Err(e) = self.gate(vcpu) {
                // Still held (or closed): the next `run()` must come back here first.
                vcpu.kick_for_hook();
                return Err(e);
            }
            // A kick that came while waiting stays: the guest may have been stopped again
            // since, and then this entry must come straight back.
            result = vcpu.enter_for_hook();
        }
        Ok(result)
    }

    fn vcpu_created(&self, vcpu: &KvmVcpu) {
        if self.lock().halted {
            // The guest is stopped: the new vcpu waits with the others.
            vcpu.kick_for_hook();
        }
    }
}
