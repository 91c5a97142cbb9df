//! arm64 for the GDB stub: gdbstub_arch's AArch64 registers (x0–x30, sp, pc, cpsr, the
//! FP/SIMD registers), the hardware breakpoint and watchpoint registers that carry
//! `break`, `hbreak` and `watch` (KVM_SET_GUEST_DEBUG's `dbg_bvr`/`dbg_wvr`), and what a
//! `Debug` exit's exception class means.

use gdbstub::target::ext::breakpoints::WatchKind;
use gdbstub_arch::aarch64::reg::AArch64CoreRegs;
use kvm_bindings::*;

use crate::error::Result;
use crate::kvm::{Arm64Regs, KvmVcpu};
use crate::VcpuExit;

/// gdb's view of the machine.
pub(super) type GdbArch = gdbstub_arch::aarch64::AArch64;
/// The registers gdb reads and writes as a whole.
pub(super) type VcpuRegs = AArch64CoreRegs;

/// Breakpoint and watchpoint register pairs used (the architecture has at least two of
/// each; the slots hold either kind, breakpoints in `dbg_bvr[slot]`, watchpoints in
/// `dbg_wvr[slot]`).
pub(super) const SLOTS: usize = 4;

/// PSTATE.M for EL1 with SP_EL1 (EL1h): the stack pointer gdb sees is SP_EL1 there.
const EL1H: u64 = 0b0101;

/// `KVM_REG_ARM_CORE` id of the 128-bit V register `n` (in `kvm_regs.fp_regs`, after
/// `user_pt_regs`, sp_el1, elr_el1 and five SPSRs, 16-byte aligned: byte 336).
const fn vreg(n: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U128 | KVM_REG_ARM_CORE as u64 | ((336 + n * 16) / 4) as u64
}
/// FPSR and FPCR follow the 32 V registers.
const FPSR: u64 = KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_CORE as u64 | ((336 + 32 * 16) / 4) as u64;
const FPCR: u64 = FPSR + 1;

fn read_u128(vcpu: &KvmVcpu, id: u64) -> Result<u128> {
    let mut b = [0u8; 16];
    vcpu.get_one_reg_bytes(id, &mut b)?;
    Ok(u128::from_le_bytes(b))
}

fn read_u32(vcpu: &KvmVcpu, id: u64) -> Result<u32> {
    let mut b = [0u8; 4];
    vcpu.get_one_reg_bytes(id, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// The FP/SIMD state: V0–V31, FPSR, FPCR.
struct FpRegs {
    v: [u128; 32],
    fpsr: u32,
    fpcr: u32,
}

fn read_fp(vcpu: &KvmVcpu) -> Result<FpRegs> {
    let mut v = [0u128; 32];
    for (i, reg) in v.iter_mut().enumerate() {
        *reg = read_u128(vcpu, vreg(i))?;
    }
    Ok(FpRegs {
        v,
        fpsr: read_u32(vcpu, FPSR)?,
        fpcr: read_u32(vcpu, FPCR)?,
    })
}

/// The vcpu's registers as gdb sees them: `sp` is the one in use (SP_EL1 in EL1h).
pub(super) fn read_regs(vcpu: &KvmVcpu) -> Result<VcpuRegs> {
    let r = vcpu.get_arm64_regs()?;
    let FpRegs { v, fpsr, fpcr } = read_fp(vcpu)?;
    Ok(AArch64CoreRegs {
        x: r.x,
        sp: if r.pstate & 0xf == EL1H { r.sp_el1 } else { r.sp },
        pc: r.pc,
        cpsr: r.pstate as u32,
        v,
        fpsr,
        fpcr,
    })
}

/// Writes what gdb changed (`set_arm64_regs` skips the general registers it kept).
pub(super) fn write_regs(vcpu: &KvmVcpu, new: &VcpuRegs) -> Result<()> {
    let now = vcpu.get_arm64_regs()?;
    let mut regs = Arm64Regs {
        x: new.x,
        pc: new.pc,
        pstate: (now.pstate & !0xffff_ffff) | u64::from(new.cpsr),
        ..now
    };
    if regs.pstate & 0xf == EL1H {
        regs.sp_el1 = new.sp;
    } else {
        regs.sp = new.sp;
    }
    vcpu.set_arm64_regs(&regs)?;
    let old = read_fp(vcpu)?;
    for (i, (was, is)) in old.v.iter().zip(new.v.iter()).enumerate() {
        if was != is {
            vcpu.set_one_reg_bytes(vreg(i), &is.to_le_bytes())?;
        }
    }
    if old.fpsr != new.fpsr {
        vcpu.set_one_reg_bytes(FPSR, &new.fpsr.to_le_bytes())?;
    }
    if old.fpcr != new.fpcr {
        vcpu.set_one_reg_bytes(FPCR, &new.fpcr.to_le_bytes())?;
    }
    Ok(())
}

/// What one slot traps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trap {
    /// Execution at the address: gdb's `break` (reported as a software breakpoint) or
    /// `hbreak`.
    Execute { software: bool },
    /// A data access of `len` bytes.
    Data { kind: WatchKind, len: u64 },
}

/// A watchpoint covers bytes of one aligned doubleword: 1, 2, 4 or 8 of them.
pub(super) fn data_trap_fits(addr: u64, len: u64) -> bool {
    matches!(len, 1 | 2 | 4 | 8) && addr % 8 + len <= 8
}

/// DBGBCR: enabled, at EL1 and EL0 (PMC 0b11), all four bytes (BAS 0b1111).
const BCR_EXECUTE: u64 = 1 | 0b11 << 1 | 0b1111 << 5;

/// The guest-debug settings for these traps, single-stepping or not.
pub(super) fn guest_debug(traps: &[Option<(u64, Trap)>; SLOTS], single_step: bool) -> kvm_guest_debug {
    let mut dbg = kvm_guest_debug::default();
    if single_step {
        dbg.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
    }
    for (i, (addr, trap)) in traps.iter().enumerate().filter_map(|(i, t)| t.map(|t| (i, t))) {
        dbg.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW;
        match trap {
            Trap::Execute { .. } => {
                dbg.arch.dbg_bvr[i] = addr & !3;
                dbg.arch.dbg_bcr[i] = BCR_EXECUTE;
            }
            Trap::Data { kind, len } => {
                // DBGWCR: enabled, EL1 and EL0 (PAC 0b11), loads (LSC 01), stores (10) or
                // both, and the watched bytes of the doubleword (BAS).
                let lsc: u64 = match kind {
                    WatchKind::Read => 0b01,
                    WatchKind::Write => 0b10,
                    WatchKind::ReadWrite => 0b11,
                };
                let bas = ((1u64 << len) - 1) << (addr % 8);
                dbg.arch.dbg_wvr[i] = addr & !7;
                dbg.arch.dbg_wcr[i] = 1 | 0b11 << 1 | lsc << 3 | bas << 5;
            }
        }
    }
    dbg
}

/// Why a `Debug` exit stopped the vcpu: the slot whose trap fired, or a single step.
pub(super) enum DebugCause {
    Step,
    Slot(usize),
    Other,
}

/// Exception classes of a debug exit (ESR_EL2.EC).
const EC_BREAKPOINT: [u32; 2] = [0x30, 0x31];
const EC_STEP: [u32; 2] = [0x32, 0x33];
const EC_WATCHPOINT: [u32; 2] = [0x34, 0x35];

/// Reads a `Debug` exit: its exception class says which kind fired; the vcpu's pc (a
/// breakpoint) or the fault address (a watchpoint) names the slot.
pub(super) fn debug_cause(vcpu: &KvmVcpu, exit: &VcpuExit, traps: &[Option<(u64, Trap)>; SLOTS]) -> DebugCause {
    let VcpuExit::Debug {
        exception, dr7: far, ..
    } = *exit
    else {
        return DebugCause::Other;
    };
    let find = |hit: &dyn Fn(u64, Trap) -> bool| {
        traps
            .iter()
            .position(|t| t.is_some_and(|(a, t)| hit(a, t)))
            .map_or(DebugCause::Other, DebugCause::Slot)
    };
    if EC_STEP.contains(&exception) {
        DebugCause::Step
    } else if EC_BREAKPOINT.contains(&exception) {
        let pc = vcpu.get_arm64_regs().map(|r| r.pc).unwrap_or(u64::MAX);
        find(&|a, t| matches!(t, Trap::Execute { .. }) && a & !3 == pc)
    } else if EC_WATCHPOINT.contains(&exception) {
        // The fault address lies in the watched doubleword.
        find(&|a, t| matches!(t, Trap::Data { .. }) && (a & !7..(a & !7) + 8).contains(&far))
    } else {
        DebugCause::Other
    }
}

/// arm64 KVM traps guest watchpoints in hardware.
pub(super) fn data_breakpoints_work() -> bool {
    true
}
