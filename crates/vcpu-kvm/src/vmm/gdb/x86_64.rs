//! x86-64 for the GDB stub: the registers gdb sees (gdbstub_arch's core and SSE set,
//! plus fs/gs base and the control registers a kernel debugger needs), the debug
//! registers that carry breakpoints and watchpoints, and what a `Debug` exit means.

use gdbstub::arch::{Arch, RegId, Registers};
use gdbstub::target::ext::breakpoints::WatchKind;
use gdbstub_arch::x86::reg::{X86SegmentRegs, X86_64CoreRegs, F80};
use kvm_bindings::*;

use std::sync::OnceLock;

use crate::error::Result;
use crate::kvm::{Kvm, KvmVcpu, VmConfig};
use crate::{Vcpu, VcpuExit};

/// The four debug address registers, DR0–DR3.
pub(super) const SLOTS: usize = 4;

/// x86-64 as this stub describes it to gdb.
pub(super) enum X86_64Vcpu {}

/// gdb's view of the machine.
pub(super) type GdbArch = X86_64Vcpu;

impl Arch for X86_64Vcpu {
    type Usize = u64;
    type Registers = VcpuRegs;
    type RegId = NoSingleRegs;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(include_str!("x86_64_target.xml"))
    }
}

/// The core and SSE registers (in gdb's order), then the system ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct VcpuRegs {
    core: X86_64CoreRegs,
    /// fs_base, gs_base, k_gs_base (org.gnu.gdb.i386.segments).
    bases: [u64; 3],
    /// cr0, cr2, cr3, cr4, cr8, efer.
    system: [u64; 6],
}

impl Registers for VcpuRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for r in self.bases.iter().chain(&self.system) {
            r.to_le_bytes().into_iter().for_each(|b| write_byte(Some(b)));
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> std::result::Result<(), ()> {
        // The core and SSE part is 0x218 bytes; each extra register 8.
        const CORE: usize = 0x218;
        let extra = bytes.get(CORE..).ok_or(())?;
        self.core.gdb_deserialize(&bytes[..CORE])?;
        for (reg, chunk) in self
            .bases
            .iter_mut()
            .chain(self.system.iter_mut())
            .zip(extra.chunks_exact(8))
        {
            *reg = u64::from_le_bytes(chunk.try_into().map_err(|_| ())?);
        }
        Ok(())
    }
}

/// Registers are read and written as a whole (the `g`/`G` packets).
#[derive(Debug)]
pub(super) enum NoSingleRegs {}

impl RegId for NoSingleRegs {
    fn from_raw_id(_id: usize) -> Option<(Self, Option<std::num::NonZeroUsize>)> {
        None
    }
}

/// What KVM holds of the registers gdb sees: read once, for a read or a write.
struct KvmRegs {
    r: kvm_regs,
    s: kvm_sregs,
    f: kvm_fpu,
    k_gs_base: u64,
}

impl KvmRegs {
    fn read(vcpu: &KvmVcpu) -> Result<Self> {
        let k_gs_base = vcpu
            .get_msrs(&[MSR_KERNEL_GS_BASE])
            .ok()
            .and_then(|m| m.first().map(|e| e.1))
            .unwrap_or(0);
        Ok(KvmRegs {
            r: vcpu.get_regs()?,
            s: vcpu.get_sregs()?,
            f: vcpu.get_fpu()?,
            k_gs_base,
        })
    }

    /// As gdb sees them.
    fn to_gdb(&self) -> VcpuRegs {
        let KvmRegs { r, s, f, k_gs_base } = self;
        let mut core = X86_64CoreRegs {
            regs: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
                r.r15,
            ],
            eflags: r.rflags as u32,
            rip: r.rip,
            segments: X86SegmentRegs {
                cs: s.cs.selector.into(),
                ss: s.ss.selector.into(),
                ds: s.ds.selector.into(),
                es: s.es.selector.into(),
                fs: s.fs.selector.into(),
                gs: s.gs.selector.into(),
            },
            mxcsr: f.mxcsr,
            ..Default::default()
        };
        for (st, raw) in core.st.iter_mut().zip(f.fpr.iter()) {
            *st = F80::try_from(&raw[..10]).unwrap_or_default();
        }
        for (xmm, raw) in core.xmm.iter_mut().zip(f.xmm.iter()) {
            *xmm = u128::from_le_bytes(*raw);
        }
        core.fpu.fctrl = f.fcw.into();
        core.fpu.fstat = f.fsw.into();
        core.fpu.ftag = f.ftwx.into();
        core.fpu.fop = f.last_opcode.into();
        core.fpu.fioff = f.last_ip as u32;
        core.fpu.fooff = f.last_dp as u32;
        VcpuRegs {
            core,
            bases: [s.fs.base, s.gs.base, *k_gs_base],
            system: [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer],
        }
    }
}

/// The vcpu's registers as gdb sees them.
pub(super) fn read_regs(vcpu: &KvmVcpu) -> Result<VcpuRegs> {
    Ok(KvmRegs::read(vcpu)?.to_gdb())
}

/// Writes what gdb changed.
pub(super) fn write_regs(vcpu: &KvmVcpu, new: &VcpuRegs) -> Result<()> {
    let now = KvmRegs::read(vcpu)?;
    let old = now.to_gdb();
    let KvmRegs {
        mut r, mut s, mut f, ..
    } = now;
    if old.core.regs != new.core.regs || old.core.rip != new.core.rip || old.core.eflags != new.core.eflags {
        let g = &new.core.regs;
        [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp] = [g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]];
        [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15] = [g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]];
        r.rip = new.core.rip;
        r.rflags = (r.rflags & !0xffff_ffff) | u64::from(new.core.eflags);
        vcpu.set_regs(&r)?;
    }
    if old.bases[..2] != new.bases[..2] || old.system != new.system {
        [s.fs.base, s.gs.base] = [new.bases[0], new.bases[1]];
        [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer] = new.system;
        vcpu.set_sregs(&s)?;
    }
    if old.bases[2] != new.bases[2] {
        vcpu.set_msrs(&[(MSR_KERNEL_GS_BASE, new.bases[2])])?;
    }
    if old.core.xmm != new.core.xmm || old.core.mxcsr != new.core.mxcsr || old.core.st != new.core.st {
        for (raw, xmm) in f.xmm.iter_mut().zip(new.core.xmm.iter()) {
            *raw = xmm.to_le_bytes();
        }
        for (raw, st) in f.fpr.iter_mut().zip(new.core.st.iter()) {
            raw[..10].copy_from_slice(st);
        }
        f.mxcsr = new.core.mxcsr;
        vcpu.set_fpu(&f)?;
    }
    Ok(())
}

/// MSR holding the kernel's GS base while user GS is live (`swapgs`).
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// What one debug address register watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trap {
    /// Execution at the address: gdb's `break` (reported as a software breakpoint) or
    /// `hbreak`.
    Execute { software: bool },
    /// A data access of `len` bytes (1, 2, 4 or 8, aligned).
    Data { kind: WatchKind, len: u64 },
}

/// Whether a data watchpoint can be set: x86 watches aligned 1, 2, 4 or 8 bytes, and
/// cannot watch reads alone (gdb's `rwatch` becomes read-or-write).
pub(super) fn data_trap_fits(addr: u64, len: u64) -> bool {
    matches!(len, 1 | 2 | 4 | 8) && addr.is_multiple_of(len)
}

/// The guest-debug settings for these traps (DR0–DR3 and DR7), single-stepping or not.
pub(super) fn guest_debug(traps: &[Option<(u64, Trap)>; SLOTS], single_step: bool) -> kvm_guest_debug {
    let mut dbg = kvm_guest_debug::default();
    if single_step {
        dbg.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
    }
    for (i, (addr, trap)) in traps.iter().enumerate().filter_map(|(i, t)| t.map(|t| (i, t))) {
        dbg.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
        dbg.arch.debugreg[i] = addr;
        // DR7: local enable, then the condition (RW) and length (LEN) fields.
        let (rw, len) = match trap {
            Trap::Execute { .. } => (0b00, 0b00),
            Trap::Data { kind, len } => {
                let rw = if kind == WatchKind::Write { 0b01 } else { 0b11 };
                let len = match len {
                    1 => 0b00,
                    2 => 0b01,
                    8 => 0b10,
                    _ => 0b11,
                };
                (rw, len)
            }
        };
        dbg.arch.debugreg[7] |= 1 << (i * 2) | rw << (16 + i * 4) | len << (18 + i * 4);
    }
    dbg
}

/// Why a `Debug` exit stopped the vcpu: the slot whose trap fired, or a single step.
pub(super) enum DebugCause {
    Step,
    Slot(usize),
    Other,
}

/// Reads DR6 from a `Debug` exit: B0–B3 name the slot, BS a single step.
pub(super) fn debug_cause(_vcpu: &KvmVcpu, exit: &VcpuExit, _traps: &[Option<(u64, Trap)>; SLOTS]) -> DebugCause {
    let VcpuExit::Debug { dr6, .. } = *exit else {
        return DebugCause::Other;
    };
    if let Some(slot) = (0..SLOTS).find(|i| dr6 & (1 << i) != 0) {
        return DebugCause::Slot(slot);
    }
    if dr6 & (1 << 14) != 0 {
        return DebugCause::Step;
    }
    DebugCause::Other
}

/// Whether this host traps a data breakpoint (DR7) hit by guest kernel code. KVMs that
/// run guest kernel code in their instruction emulator check only instruction
/// breakpoints there; a watchpoint then works by stepping (see `target`). Asked once per
/// process, of a two-instruction guest.
pub(super) fn data_breakpoints_work() -> bool {
    static WORK: OnceLock<bool> = OnceLock::new();
    *WORK.get_or_init(|| probe_data_breakpoint().unwrap_or(false))
}

fn probe_data_breakpoint() -> Result<bool> {
    const CODE: u64 = 0x1000;
    const DATA: u64 = 0x5000;
    let vm = Kvm::open(None)?.create_vm(VmConfig {
        hypercall_port: None,
        ..VmConfig::default()
    })?;
    vm.add_memory(0, 2 << 20, false, false)?;
    // mov byte [0x5000], 1; hlt
    vm.write(CODE, &[0xc6, 0x04, 0x25, 0x00, 0x50, 0x00, 0x00, 0x01, 0xf4])?;
    let vcpu = vm.create_vcpu(0)?;
    vcpu.setup_long_mode_at(CODE, 0x8000)?;
    let mut traps = [None; SLOTS];
    traps[0] = Some((
        DATA,
        Trap::Data {
            kind: WatchKind::Write,
            len: 1,
        },
    ));
    vcpu.set_debugger_guest_debug(&guest_debug(&traps, false))?;
    let exit = vcpu.run();
    vm.close();
    Ok(matches!(exit, Ok(VcpuExit::Debug { .. })))
}
