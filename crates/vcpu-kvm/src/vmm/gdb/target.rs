//! The VM as gdbstub's multi-threaded target: vcpus are threads (vcpu `n` is thread
//! `n + 1`), memory is read and written by guest virtual address through the guest's
//! page tables, and breakpoints and watchpoints share the architecture's debug
//! registers (`arch::SLOTS` of them).

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

use gdbstub::stub::MultiThreadStopReason;

use super::arch::{self, DebugCause, GdbArch, Trap, VcpuRegs, SLOTS};
use super::hold::DebugHold;
use crate::kvm::{KvmVcpu, KvmVm, PAGE_SIZE};
use crate::{Vcpu, VcpuExit};

/// The VM being debugged.
pub(super) struct VmTarget {
    pub(super) vm: KvmVm,
    /// The debugger's hold on the vcpus.
    pub(super) hold: Arc<DebugHold>,
    /// What each debug address register holds, the same on every vcpu.
    pub(super) traps: [Option<(u64, Trap)>; SLOTS],
    /// The vcpus gdb asked to single-step at the next resume.
    stepping: BTreeSet<usize>,
    /// The vcpus gdb asked to continue at the next resume.
    continuing: BTreeSet<usize>,
    /// Only the vcpus named run (gdb's scheduler locking); the others stay stopped.
    locked: bool,
    /// The vcpus that stay stopped at this resume.
    frozen: BTreeSet<usize>,
    /// Where data breakpoints do not fire (see `data_breakpoints_work`): the running
    /// vcpus are stepped, and each watched location compared with its value before.
    watched: Option<Vec<Watched>>,
}

/// A watched location and its bytes at the last resume.
struct Watched {
    addr: u64,
    kind: WatchKind,
    bytes: Vec<u8>,
}

impl VmTarget {
    pub(super) fn new(vm: KvmVm, hold: Arc<DebugHold>) -> Self {
        VmTarget {
            vm,
            hold,
            traps: [None; SLOTS],
            stepping: BTreeSet::new(),
            continuing: BTreeSet::new(),
            locked: false,
            frozen: BTreeSet::new(),
            watched: None,
        }
    }

    /// What gdb is told about a `Debug` exit of vcpu `id`; `None` for a step the stub
    /// took itself to check its watched locations, which changed nothing.
    pub(super) fn stop_for(&mut self, id: usize, exit: VcpuExit) -> Option<MultiThreadStopReason<u64>> {
        let tid = super::tid(id);
        let trap = MultiThreadStopReason::SignalWithThread {
            tid,
            signal: Signal::SIGTRAP,
        };
        if !matches!(exit, VcpuExit::Debug { .. }) {
            return Some(trap);
        }
        let Ok(vcpu) = self.vcpu(tid) else {
            return Some(trap);
        };
        match arch::debug_cause(&vcpu, &exit, &self.traps) {
            DebugCause::Slot(slot) => Some(match self.traps[slot] {
                Some((_, Trap::Execute { software: true })) => MultiThreadStopReason::SwBreak(tid),
                Some((_, Trap::Execute { software: false })) => MultiThreadStopReason::HwBreak(tid),
                Some((addr, Trap::Data { kind, .. })) => MultiThreadStopReason::Watch { tid, kind, addr },
                None => trap,
            }),
            DebugCause::Step => {
                if let Some((addr, kind)) = self.changed_watch(id) {
                    return Some(MultiThreadStopReason::Watch { tid, kind, addr });
                }
                if self.watched.is_some() && !self.stepping.contains(&id) {
                    return None;
                }
                Some(trap)
            }
            DebugCause::Other => Some(trap),
        }
    }

    /// The first watched location whose bytes changed, seen by vcpu `id`.
    fn changed_watch(&self, id: usize) -> Option<(u64, WatchKind)> {
        let vcpu = self.vcpu(super::tid(id)).ok()?;
        self.watched.as_ref()?.iter().find_map(|w| {
            let now = self.read_virtual(&vcpu, w.addr, w.bytes.len())?;
            (now != w.bytes).then_some((w.addr, w.kind))
        })
    }

    /// Lets the guest run on after a step of the stub's own.
    pub(super) fn resume_again(&mut self) {
        self.hold.resume(self.frozen.clone());
    }

    fn read_virtual(&self, vcpu: &KvmVcpu, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0; len];
        let read = self.each_page(vcpu, addr, len, |gpa, at, n| {
            self.vm.read(gpa, &mut buf[at..at + n]).is_ok()
        });
        (read == len).then_some(buf)
    }

    fn vcpu(&self, tid: Tid) -> TargetResult<Arc<KvmVcpu>, Self> {
        let id = tid.get() - 1;
        self.vm
            .vcpus()
            .into_iter()
            .find(|v| v.id() == id)
            .ok_or(TargetError::NonFatal)
    }

    /// Gives every vcpu the current traps, and single-step to those stepping (all the
    /// running ones while watching by stepping). Records the watched bytes.
    fn apply_debug(&mut self) {
        let data: Vec<(u64, WatchKind, u64)> = self
            .traps
            .iter()
            .flatten()
            .filter_map(|(addr, t)| match t {
                Trap::Data { kind, len } => Some((*addr, *kind, *len)),
                Trap::Execute { .. } => None,
            })
            .collect();
        self.watched = None;
        if !data.is_empty() && !arch::data_breakpoints_work() {
            let first = self.vm.vcpus().into_iter().next();
            let watched = data
                .iter()
                .filter_map(|&(addr, kind, len)| {
                    let bytes = self.read_virtual(first.as_ref()?, addr, len as usize)?;
                    Some(Watched { addr, kind, bytes })
                })
                .collect();
            self.watched = Some(watched);
        }
        for vcpu in self.vm.vcpus() {
            let step = self.stepping.contains(&vcpu.id()) || self.watched.is_some();
            let _ = vcpu.set_debugger_guest_debug(&arch::guest_debug(&self.traps, step));
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
    type Arch = GdbArch;
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
        let read = self.each_page(&vcpu, start, len, |gpa, at, n| {
            self.vm.read(gpa, &mut data[at..at + n]).is_ok()
        });
        if read == 0 && len > 0 {
            return Err(TargetError::NonFatal);
        }
        Ok(read)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let vcpu = self.vcpu(tid)?;
        let written = self.each_page(&vcpu, start, data.len(), |gpa, at, n| {
            self.vm.write(gpa, &data[at..at + n]).is_ok()
        });
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
        self.frozen = match self.locked {
            true => self
                .vm
                .vcpus()
                .iter()
                .map(|v| v.id())
                .filter(|id| !self.stepping.contains(id) && !self.continuing.contains(id))
                .collect(),
            false => BTreeSet::new(),
        };
        self.hold.resume(self.frozen.clone());
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
