//! arm64 registers through `KVM_GET/SET_ONE_REG`: the core registers by their arm64
//! names, the EL1 banked ones a VMM sets to start a guest, and any system register by
//! its encoding.

use kvm_bindings::*;

use crate::error::{Context, Result};
use crate::kvm::vcpu::KvmVcpu;

/// The core registers, in [`Arm64Regs`]' order: x0–x30, sp (SP_EL0), pc, pstate, and
/// the EL1 banked sp_el1, elr_el1, spsr_el1.
pub const ARM64_CORE_REG_NAMES: [&str; 37] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17",
    "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30", "sp", "pc", "pstate",
    "sp_el1", "elr_el1", "spsr_el1",
];

/// The general registers of an arm64 vcpu.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arm64Regs {
    /// x0–x30 (x30 is the link register).
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp: u64,
    pub pc: u64,
    /// PSTATE (SPSR layout): EL and SP selection, DAIF masks, condition flags.
    pub pstate: u64,
    /// The stack pointer at EL1 (what `sp` means to code running at EL1h).
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
}

/// `KVM_REG_ARM_CORE` register id for the 64-bit field at byte `offset` of `kvm_regs`.
const fn core(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}

/// x`n`'s register id.
pub(super) const fn x(n: usize) -> u64 {
    core(n * 8)
}

const SP: u64 = core(31 * 8);
const PC: u64 = core(32 * 8);
const PSTATE: u64 = core(33 * 8);
// `kvm_regs` after `user_pt_regs` (34 × 8 bytes): sp_el1, elr_el1, spsr[0] (SPSR_EL1).
const SP_EL1: u64 = core(34 * 8);
const ELR_EL1: u64 = core(35 * 8);
const SPSR_EL1: u64 = core(36 * 8);

/// The register id of system register (op0, op1, CRn, CRm, op2), e.g. SCTLR_EL1 is
/// `sys_reg(3, 0, 1, 0, 0)`.
pub const fn sys_reg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG as u64 | op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
}

/// PSTATE for EL1 with its own stack pointer (EL1h) and D, A, I, F masked.
const PSTATE_EL1H_MASKED: u64 = 0x3c5;

impl KvmVcpu {
    /// `KVM_GET_ONE_REG` of a 64-bit register.
    pub fn get_one_reg(&self, id: u64) -> Result<u64> {
        let mut bytes = [0u8; 8];
        self.fd("getOneReg")?.get_one_reg(id, &mut bytes).op("getOneReg")?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// `KVM_GET_ONE_REG` of a register as wide as `bytes` (the id says how wide).
    pub fn get_one_reg_bytes(&self, id: u64, bytes: &mut [u8]) -> Result<()> {
        self.fd("getOneReg")?.get_one_reg(id, bytes).op("getOneReg")?;
        Ok(())
    }

    /// `KVM_SET_ONE_REG` of a register as wide as `bytes`.
    pub fn set_one_reg_bytes(&self, id: u64, bytes: &[u8]) -> Result<()> {
        self.fd("setOneReg")?.set_one_reg(id, bytes).op("setOneReg")?;
        Ok(())
    }

    /// `KVM_SET_ONE_REG` of a 64-bit register.
    pub fn set_one_reg(&self, id: u64, value: u64) -> Result<()> {
        self.fd("setOneReg")?
            .set_one_reg(id, &value.to_le_bytes())
            .op("setOneReg")?;
        Ok(())
    }

    /// The general registers (37 `KVM_GET_ONE_REG` calls: arm64 has no bulk read).
    pub fn get_arm64_regs(&self) -> Result<Arm64Regs> {
        let mut r = Arm64Regs::default();
        for (i, reg) in r.x.iter_mut().enumerate() {
            *reg = self.get_one_reg(x(i))?;
        }
        r.sp = self.get_one_reg(SP)?;
        r.pc = self.get_one_reg(PC)?;
        r.pstate = self.get_one_reg(PSTATE)?;
        r.sp_el1 = self.get_one_reg(SP_EL1)?;
        r.elr_el1 = self.get_one_reg(ELR_EL1)?;
        r.spsr_el1 = self.get_one_reg(SPSR_EL1)?;
        Ok(r)
    }

    /// Sets the general registers that differ from the vcpu's.
    pub fn set_arm64_regs(&self, regs: &Arm64Regs) -> Result<()> {
        let now = self.get_arm64_regs()?;
        for i in 0..31 {
            if regs.x[i] != now.x[i] {
                self.set_one_reg(x(i), regs.x[i])?;
            }
        }
        for (id, new, old) in [
            (SP, regs.sp, now.sp),
            (PC, regs.pc, now.pc),
            (PSTATE, regs.pstate, now.pstate),
            (SP_EL1, regs.sp_el1, now.sp_el1),
            (ELR_EL1, regs.elr_el1, now.elr_el1),
            (SPSR_EL1, regs.spsr_el1, now.spsr_el1),
        ] {
            if new != old {
                self.set_one_reg(id, new)?;
            }
        }
        Ok(())
    }

    /// Starts the vcpu at `pc` in EL1h (interrupts masked, MMU off as after reset) with
    /// its EL1 stack pointer at `sp`.
    pub fn setup_el1(&self, pc: u64, sp: u64) -> Result<()> {
        self.set_one_reg(PSTATE, PSTATE_EL1H_MASKED)?;
        self.set_one_reg(SP_EL1, sp)?;
        self.set_one_reg(PC, pc)
    }
}
