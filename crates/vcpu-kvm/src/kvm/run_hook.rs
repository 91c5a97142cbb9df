//! `RunHook`: how something outside the backend (the GDB stub, `vmm::gdb`) takes some of
//! a vcpu's run outcomes before its caller sees them, whatever loop runs the vcpu.
//!
//! `run()` pays one compare for it: the outcome is the hook's when it is a debug exit
//! while a hook is set, or an interruption the hook asked for (`Want::Hook`). Only then
//! does it call [`RunHook::take`], which may hold the vcpu and enter the guest again.

// The GDB stub, the one hook so far, is built for x86 only.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::arch;
use super::kick::{VcpuThread, Want};
use super::vcpu::KvmVcpu;
use super::vm::KvmVm;
use crate::error::Result;
use crate::VcpuExit;

/// What one `KVM_RUN` gave: `Ok` for an exit, the errno otherwise.
pub(crate) type RawOutcome = std::result::Result<(), vmm_sys_util::errno::Error>;

/// Takes the run outcomes that are its own (see the module notes).
pub(crate) trait RunHook: Send + Sync {
    /// `vcpu`'s run came back with an outcome of the hook's. Runs it on (with
    /// [`KvmVcpu::enter_for_hook`]) until an outcome is the caller's, and returns that;
    /// an error ends the run (the vcpu stays wanted by the hook, so its next run comes
    /// back here first).
    fn take(&self, vcpu: &KvmVcpu, outcome: RawOutcome) -> Result<RawOutcome>;

    /// A vcpu of the VM was created while the hook is set (it may hold it from its
    /// first entry).
    fn vcpu_created(&self, vcpu: &KvmVcpu);
}

/// A VM's hook, if one is set. The flag is what `run()` reads; the hook itself is
/// looked up only on its cold path.
#[derive(Default)]
pub(crate) struct HookSlot {
    set: AtomicBool,
    hook: Mutex<Option<Arc<dyn RunHook>>>,
}

impl HookSlot {
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self) -> Option<Arc<dyn RunHook>> {
        // Each update is one store: a poisoned lock is still consistent.
        self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set(&self, hook: Option<Arc<dyn RunHook>>) {
        let mut slot = self.hook.lock().unwrap_or_else(|p| p.into_inner());
        self.set.store(hook.is_some(), Ordering::Release);
        *slot = hook;
    }
}

impl KvmVm {
    /// Sets (or with `None` removes) the hook that takes some run outcomes of every
    /// vcpu before their callers do.
    pub(crate) fn set_run_hook(&self, hook: Option<Arc<dyn RunHook>>) {
        self.shared().hook.set(hook);
    }
}

impl KvmVcpu {
    /// Kicks the vcpu out of `KVM_RUN` for the hook (or keeps it from entering): `run()`
    /// hands the interruption to [`RunHook::take`], never to its caller.
    pub(crate) fn kick_for_hook(&self) {
        self.run_shared().kick.kick(Want::Hook);
    }

    /// Takes back the hook's kick, if one is pending: `immediate_exit` returns to what
    /// the user and other kickers asked for. True if there was one.
    pub(crate) fn take_hook_kick(&self) -> bool {
        self.run_shared().kick.withdraw(Want::Hook)
    }

    /// Whether a thread is inside `KVM_RUN` with this vcpu now.
    pub(crate) fn in_guest(&self) -> bool {
        self.run_shared().kick.thread_inside()
    }

    /// One more `KVM_RUN`, for a hook holding this vcpu inside `run()`.
    pub(crate) fn enter_for_hook(&self) -> RawOutcome {
        self.enter(VcpuThread::current())
    }

    /// The debug exit this run came back with, kept as the last exit.
    pub(crate) fn take_debug_exit(&self) -> VcpuExit {
        // Not `decode_exit`: it stays inlined in `run()` when called once.
        let exit = arch::debug_exit(self.kvm_run());
        self.set_last(exit);
        exit
    }
}
