//! What an arm64 snapshot holds beyond memory: the GIC's distributor, and per vcpu every
//! register `KVM_GET_REG_LIST` names (general, floating-point, system, timer and the
//! firmware's pseudo-registers) through ONE_REG, its MP state and its part of the GIC.
//! The GIC's state goes back once the restored VM's GIC is initialised (see `gic`).

use kvm_bindings::*;
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::gic_state::{self, VcpuGic, MAX_GIC_REGS};
use super::gic_v2_state;
use super::VmArch;
use crate::error::{Context, Error, ErrorCode, Result};
use crate::kvm::vcpu::KvmVcpu;
use crate::Vcpu;

const OP: &str = "snapshot";
const RESTORE: &str = "restoreVm";
/// The most registers a saved vcpu may have (KVM lists a few hundred without SVE).
const MAX_REGS: usize = 4096;
/// The widest register kept: 2048 bits (an SVE vector; FP registers are 128).
const MAX_REG_BYTES: usize = 256;
/// MPIDR_EL1, which names the vcpu to the GIC.
const MPIDR_EL1: u64 = super::sys_reg(3, 0, 0, 0, 5);

/// The VM-wide state: the GIC's distributor (with the in-kernel GIC).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct VmSnapshot {
    gic_dist: Option<Vec<gic_state::Reg32>>,
    /// A GICv2's whole state instead (distributor, banked and CPU-interface registers).
    gic_v2: Option<Vec<gic_v2_state::AttrReg>>,
}

/// One vcpu's state.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct VcpuSnapshot {
    pub(crate) id: u32,
    mp_state: u32,
    /// Each register's id and its bytes (little-endian, as wide as the id says).
    regs: Vec<(u64, Vec<u8>)>,
    gic: Option<VcpuGic>,
}

/// A register's width in bytes, from its id (`KVM_REG_SIZE_*`).
fn reg_bytes(id: u64) -> usize {
    1 << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT)
}

impl VmSnapshot {
    /// Whether this state fits a VM with (or without) the in-kernel GIC.
    pub(crate) fn check(&self, irqchip: bool) -> std::result::Result<(), String> {
        let has_gic = self.gic_dist.is_some() || self.gic_v2.is_some();
        if has_gic != irqchip || (self.gic_dist.is_some() && self.gic_v2.is_some()) {
            return Err(format!(
                "its VM state {} GIC state for a VM {} the in-kernel GIC",
                if irqchip { "lacks" } else { "has" },
                if irqchip { "with" } else { "without" }
            ));
        }
        if self.gic_dist.as_ref().is_some_and(|d| d.len() > MAX_GIC_REGS)
            || self.gic_v2.as_ref().is_some_and(|d| d.len() > MAX_GIC_REGS)
        {
            return Err(format!("its GIC state has more than {MAX_GIC_REGS} registers"));
        }
        if self
            .gic_v2
            .as_ref()
            .is_some_and(|regs| !regs.iter().all(gic_v2_state::is_known))
        {
            return Err("its GICv2 state names a register no GICv2 has".into());
        }
        Ok(())
    }
}

impl VcpuSnapshot {
    /// Whether each part has a size KVM takes.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let id = self.id;
        if self.regs.len() > MAX_REGS {
            return Err(format!(
                "vcpu {id} has {} registers (at most {MAX_REGS})",
                self.regs.len()
            ));
        }
        if let Some((reg, _)) = self
            .regs
            .iter()
            .find(|(reg, bytes)| reg_bytes(*reg) > MAX_REG_BYTES || bytes.len() != reg_bytes(*reg))
        {
            return Err(format!("vcpu {id}'s register {reg:#x} has the wrong size"));
        }
        self.gic.as_ref().map_or(Ok(()), |g| g.check())
    }
}

fn gic_of(arch: &VmArch) -> Option<&super::gic::Gic> {
    arch.gic.as_ref()
}

pub(crate) fn save_vm(arch: &VmArch, _fd: &VmFd, _irqchip: bool) -> Result<VmSnapshot> {
    let (mut gic_dist, mut gic_v2) = (None, None);
    if let Some(gic) = gic_of(arch) {
        gic.finalize(OP)?;
        match gic.version {
            super::GicVersion::V3 => gic_dist = Some(gic_state::save_dist(&gic.fd, OP)?),
            super::GicVersion::V2 => gic_v2 = Some(gic_v2_state::save(&gic.fd, OP)?),
        }
    }
    Ok(VmSnapshot { gic_dist, gic_v2 })
}

/// Hands the GIC's state to the GIC, which puts it back once initialised. A file whose
/// GIC is not the kind this host gave the VM is refused.
pub(crate) fn restore_vm(arch: &VmArch, _fd: &VmFd, vm: &VmSnapshot) -> Result<()> {
    if let Some(gic) = gic_of(arch) {
        let fits = match gic.version {
            super::GicVersion::V3 => vm.gic_v2.is_none(),
            super::GicVersion::V2 => vm.gic_dist.is_none(),
        };
        if !fits {
            return Err(Error::new(
                ErrorCode::Errno(libc::ENOTSUP),
                RESTORE,
                format!(
                    "{RESTORE}: the snapshot's GIC is not the {:?} KVM gives here",
                    gic.version
                ),
            ));
        }
        let mut restoring = gic.restoring();
        restoring.dist = vm.gic_dist.clone();
        restoring.v2 = vm.gic_v2.clone();
    }
    Ok(())
}

/// Every register KVM lists for the vcpu.
fn reg_list(vcpu: &KvmVcpu) -> Result<Vec<u64>> {
    crate::kvm::ioctls::reg_list(vcpu.fd(OP)?, MAX_REGS).map_err(|e| match e.errno() {
        libc::E2BIG => Error::invalid(OP, format!("snapshot: the vcpu has more than {MAX_REGS} registers")),
        errno => Error::errno(OP, errno),
    })
}

pub(crate) fn save_vcpu(vcpu: &KvmVcpu, _irqchip: bool) -> Result<VcpuSnapshot> {
    let fd = vcpu.fd(OP)?;
    let mut regs = Vec::new();
    for id in reg_list(vcpu)? {
        let mut bytes = vec![0u8; reg_bytes(id)];
        if bytes.len() > MAX_REG_BYTES {
            continue;
        }
        fd.get_one_reg(id, &mut bytes).op(OP)?;
        regs.push((id, bytes));
    }
    let mp_state = fd.get_mp_state().op(OP)?.mp_state;
    // A GICv3's vcpu part; a GICv2's is saved with the VM's.
    let gic = match gic_of(&vcpu.vm.shared().arch) {
        Some(gic) if gic.version == super::GicVersion::V3 => {
            gic.finalize(OP)?;
            Some(gic_state::save_vcpu(&gic.fd, vcpu.get_one_reg(MPIDR_EL1)?, OP)?)
        }
        _ => None,
    };
    Ok(VcpuSnapshot {
        id: vcpu.id() as u32,
        mp_state,
        regs,
        gic,
    })
}

fn write_regs(vcpu: &KvmVcpu, s: &VcpuSnapshot) -> Result<()> {
    let fd = vcpu.fd(RESTORE)?;
    for (id, bytes) in &s.regs {
        fd.set_one_reg(*id, bytes).map_err(|e| {
            Error::new(
                ErrorCode::Errno(e.errno()),
                RESTORE,
                format!("{RESTORE}: vcpu {}: register {id:#x}: {e}", s.id),
            )
        })?;
    }
    fd.set_mp_state(kvm_mp_state { mp_state: s.mp_state }).op(RESTORE)
}

/// Puts the registers back, and hands the vcpu's part of the GIC to the GIC.
pub(crate) fn restore_vcpu(vcpu: &KvmVcpu, s: &VcpuSnapshot) -> Result<()> {
    write_regs(vcpu, s)?;
    if let (Some(gic), Some(part)) = (gic_of(&vcpu.vm.shared().arch), &s.gic) {
        gic.restoring().vcpus.push(part.clone());
    }
    Ok(())
}

/// A reset in place: the registers (a VM with a GIC cannot reset in place).
pub(crate) fn reset_vcpu(vcpu: &KvmVcpu, s: &VcpuSnapshot) -> Result<()> {
    write_regs(vcpu, s)
}

pub(crate) fn reset_vm(arch: &VmArch, _fd: &VmFd, vm: &VmSnapshot) -> Result<()> {
    if arch.gic.is_some() || vm.gic_dist.is_some() || vm.gic_v2.is_some() {
        return Err(Error::new(
            ErrorCode::Errno(libc::ENOTSUP),
            "reset",
            "reset: a VM with the in-kernel GIC cannot be reset in place; restore its snapshot",
        ));
    }
    Ok(())
}
