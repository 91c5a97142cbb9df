//! The VM as gdbstub's multi-threaded target: vcpus are threads (vcpu `n` is thread
//! `n + 1`), memory is read and written by guest virtual address through the guest's
//! page tables, and breakpoints and watchpoints share the four debug registers.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::Arc;

use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps, WatchKind,
};
use gdbstub::target::{Target, TargetError, TargetResult};

use super::x86_64::{self as arch, Trap, VcpuRegs, X86_64Vcpu, SLOTS};
use crate::kvm::{KvmVcpu, KvmVm, PAGE_SIZE};
use crate::Vcpu;

/// The VM being debugged.
pub(super) struct VmTarget {
    pub(super) vm: KvmVm,
    /// What each debug address register holds, the same on every vcpu.
    pub(super) traps: [Option<(u64, Trap)>; SLOTS],
    /// The vcpus gdb asked to single-step at the next resume.
    stepping: BTreeSet<usize>,
    /// The vcpus gdb asked to continue at the next resume.
    continuing: BTreeSet<usize>,
    /// Only the vcpus named run (gdb's scheduler locking); the others stay stopped.
    locked: bool,
}

impl VmTarget {
    pub(super) fn new(vm: KvmVm) -> Self {
        VmTarget {
            vm,
            traps: [None; SLOTS],
            stepping: BTreeSet::new(),
            continuing: BTreeSet::new(),
            locked: false,
        }
    }

    fn vcpu(&self, tid: Tid) -> TargetResult<Arc<KvmVcpu>, Self> {
        let id = tid.get() - 1;
        self.vm.vcpus().into_iter().find(|v| v.id() == id).ok_or(TargetError::NonFatal)
    }

    /// Gives every vcpu the current traps, and single-step to those stepping.
    fn apply_debug(&self) {
        for vcpu in self.vm.vcpus() {
            let debug = arch::guest_debug(&self.traps, self.stepping.contains(&vcpu.id()));
            let _ = vcpu.set_debugger_guest_debug(&debug);
        }
    }

    fn add_trap(&mut self, addr: u64, trap: Trap) -> bool {
        if self.traps.iter().flatten().any(|t| *t == (addr, trap)) {
            return true;
        }
        match self.traps.iter_mut().find(|t| t.is_none()) {
            Some(free) => {
                *free = Some((addr, trap));
                true
            }
            None => false, // gdb says "Could not insert breakpoint": four at most
        }
    }

    fn remove_trap(&mut self, addr: u64, trap: Trap) -> bool {
        match self.traps.iter_mut().find(|t| **t == Some((addr, trap))) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    /// `[addr, addr + len)` of guest virtual memory, page by page, as seen by `vcpu`:
    /// `f(guest physical address, offset in the buffer, length)` until it fails.
    fn each_page(&self, vcpu: &KvmVcpu, addr: u64, len: usize, mut f: impl FnMut(u64, usize, usize) -> bool) -> usize {
        let mut done = 0;
        while done < len {
            let gva = addr.wrapping_add(done as u64);
            let in_page = (PAGE_SIZE - gva % PAGE_SIZE) as usize;
            let n = in_page.min(len - done);
            let Ok(Some(gpa)) = vcpu.translate_gva(gva) else { break };
            if !f(gpa, done, n) {
                break;
            }
            done += n;
        }
        done
    }
}

impl Target for VmTarget {
    type Arch = X86_64Vcpu;
    type Error = &'static str;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadBase for VmTarget {
    fn read_registers(&mut self, regs: &mut VcpuRegs, tid: Tid) -> TargetResult<(), Self> {
        let vcpu = self.vcpu(tid)?;
        *regs = arch::read_regs(&vcpu).map_err(|_| TargetError::NonFatal)?;
        Ok(())
    }

    fn write_registers(&mut self, regs: &VcpuRegs, tid: Tid) -> TargetResult<(), Self> {
        let vcpu = self.vcpu(tid)?;
        arch::write_regs(&vcpu, regs).map_err(|_| TargetError::NonFatal)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let vcpu = self.vcpu(tid)?;
        let len = data.len();
        let read = self.each_page(&vcpu, start, len, |gpa, at, n| self.vm.read(gpa, &mut data[at..at + n]).is_ok());
        if read == 0 && len > 0 {
            return Err(TargetError::NonFatal);
        }
        Ok(read)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let vcpu = self.vcpu(tid)?;
        let written = self.each_page(&vcpu, start, data.len(), |gpa, at, n| self.vm.write(gpa, &data[at..at + n]).is_ok());
        if written < data.len() {
            return Err(TargetError::NonFatal);
        }
        Ok(())
    }

    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for vcpu in self.vm.vcpus() {
            if let Some(tid) = NonZeroUsize::new(vcpu.id() + 1) {
                thread_is_active(tid);
            }
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for VmTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.apply_debug();
        let frozen = match self.locked {
            true => self
                .vm
                .vcpus()
                .iter()
                .map(|v| v.id())
                .filter(|id| !self.stepping.contains(id) && !self.continuing.contains(id))
                .collect(),
            false => BTreeSet::new(),
        };
        self.vm.debug_resume(frozen);
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.stepping.clear();
        self.continuing.clear();
        self.locked = false;
        Ok(())
    }

    fn set_resume_action_continue(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Self::Error> {
        // A signal for a vcpu means nothing here (gdb passes the last stop's SIGTRAP or
        // SIGINT back when told to): it is dropped.
        let _ = signal;
        self.continuing.insert(tid.get() - 1);
        Ok(())
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSchedulerLocking for VmTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.locked = true;
        Ok(())
    }
}

impl MultiThreadSingleStep for VmTarget {
    fn set_resume_action_step(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.stepping.insert(tid.get() - 1);
        Ok(())
    }
}

impl Breakpoints for VmTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// `break`: a debug register too, not an `int3` written into the guest. Guest memory
/// stays as it is, and it works where KVM cannot trap `int3` in guest kernel code (KVMs
/// that emulate it); the four registers are shared with `hbreak` and `watch`.
impl SwBreakpoint for VmTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_trap(addr, Trap::Execute { software: true }))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_trap(addr, Trap::Execute { software: true }))
    }
}

impl HwBreakpoint for VmTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_trap(addr, Trap::Execute { software: false }))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_trap(addr, Trap::Execute { software: false }))
    }
}

impl HwWatchpoint for VmTarget {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        if !arch::data_trap_fits(addr, len) {
            return Ok(false);
        }
        Ok(self.add_trap(addr, Trap::Data { kind, len }))
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        Ok(self.remove_trap(addr, Trap::Data { kind, len }))
    }
}
