//! The GICv3's state through KVM's device attributes (Documentation/virt/kvm/devices/
//! arm-vgic-v3.rst), as Firecracker saves it: the distributor's registers for the shared
//! interrupts, and per vcpu its redistributor's registers for the private ones and its
//! CPU interface's system registers. Registers are read and written as the guest would
//! see them; KVM wants the redistributors' after the distributor's.

use kvm_bindings::*;
use kvm_ioctls::DeviceFd;
use serde::{Deserialize, Serialize};

use super::gic::{access, gic_error};
use crate::arch::aarch64::layout::GIC_NR_IRQS;
use crate::error::Result;

/// A 32-bit register of the distributor or a redistributor: its offset and value.
pub(crate) type Reg32 = (u32, u32);
/// A CPU-interface system register: its encoding (op0, op1, CRn, CRm, op2) and value.
pub(crate) type SysReg = (u16, u64);

/// The most registers one saved part may have (a GIC with 1020 interrupts has under
/// 2,000): bounds what a forged file makes a restore do.
pub(crate) const MAX_GIC_REGS: usize = 4096;

/// GICD_CTLR and GICD_STATUSR.
const GICD_SINGLE: [u32; 2] = [0x0, 0x10];
/// The distributor's per-interrupt banks: offset and bits per interrupt (IGROUPR,
/// ISENABLER, ISPENDR, ISACTIVER, IPRIORITYR, ICFGR, IGRPMODR).
const GICD_BANKS: [(u32, u32); 7] = [
    (0x080, 1),
    (0x100, 1),
    (0x200, 1),
    (0x300, 1),
    (0x400, 8),
    (0xc00, 2),
    (0xd00, 1),
];
/// GICD_IROUTER: 64 bits per shared interrupt.
const GICD_IROUTER: u32 = 0x6000;
/// The redistributor's registers: GICR_CTLR, GICR_STATUSR, GICR_WAKER, then in its SGI
/// frame IGROUPR0, ISENABLER0, ISPENDR0, ISACTIVER0, IPRIORITYR0–7, ICFGR0–1, IGRPMODR0.
const GICR_REGS: [u32; 18] = [
    0x0, 0x10, 0x14, 0x1_0080, 0x1_0100, 0x1_0200, 0x1_0300, 0x1_0400, 0x1_0404, 0x1_0408, 0x1_040c, 0x1_0410,
    0x1_0414, 0x1_0418, 0x1_041c, 0x1_0c00, 0x1_0c04, 0x1_0d00,
];
/// `(op0, op1, CRn, CRm, op2)` as KVM's attribute encodes a system register.
const fn icc(op0: u16, op1: u16, crn: u16, crm: u16, op2: u16) -> u16 {
    op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
}
/// The CPU interface, in the order a restore writes it: ICC_SRE_EL1 and ICC_CTLR_EL1
/// first (they say what the rest means), IGRPEN0/1, PMR, BPR0/1, then the active
/// priority registers AP0R0–3 and AP1R0–3 (those the GIC has).
const ICC_REGS: [u16; 15] = [
    icc(3, 0, 12, 12, 5),
    icc(3, 0, 12, 12, 4),
    icc(3, 0, 12, 12, 6),
    icc(3, 0, 12, 12, 7),
    icc(3, 0, 4, 6, 0),
    icc(3, 0, 12, 8, 3),
    icc(3, 0, 12, 12, 3),
    icc(3, 0, 12, 8, 4),
    icc(3, 0, 12, 8, 5),
    icc(3, 0, 12, 8, 6),
    icc(3, 0, 12, 8, 7),
    icc(3, 0, 12, 9, 0),
    icc(3, 0, 12, 9, 1),
    icc(3, 0, 12, 9, 2),
    icc(3, 0, 12, 9, 3),
];

/// One vcpu's part of the GIC.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct VcpuGic {
    pub(crate) mpidr: u64,
    pub(crate) redist: Vec<Reg32>,
    pub(crate) icc: Vec<SysReg>,
}

impl VcpuGic {
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.redist.len() > MAX_GIC_REGS || self.icc.len() > MAX_GIC_REGS {
            return Err(format!("a vcpu's GIC state has more than {MAX_GIC_REGS} registers"));
        }
        Ok(())
    }
}

/// The attribute's affinity field for a vcpu whose MPIDR_EL1 is `mpidr`.
fn affinity(mpidr: u64) -> u64 {
    ((mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24) << KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT
}

/// The distributor's registers for the shared interrupts.
fn dist_offsets() -> Vec<u32> {
    let mut offsets = GICD_SINGLE.to_vec();
    for (base, bits) in GICD_BANKS {
        let (first, end) = (base + 32 * bits / 8, base + GIC_NR_IRQS * bits / 8);
        offsets.extend((first..end).step_by(4));
    }
    for irq in 32..GIC_NR_IRQS {
        offsets.extend([GICD_IROUTER + 8 * irq, GICD_IROUTER + 8 * irq + 4]);
    }
    offsets
}

pub(crate) fn save_dist(fd: &DeviceFd, op: &'static str) -> Result<Vec<Reg32>> {
    dist_offsets()
        .into_iter()
        .map(|offset| {
            let mut v = 0u32;
            access(fd, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, offset.into(), &mut v, false)
                .map_err(|e| gic_error(op, &format!("distributor register {offset:#x}"), e))?;
            Ok((offset, v))
        })
        .collect()
}

pub(crate) fn restore_dist(fd: &DeviceFd, regs: &[Reg32], op: &'static str) -> Result<()> {
    for &(offset, mut v) in regs {
        access(fd, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, offset.into(), &mut v, true)
            .map_err(|e| gic_error(op, &format!("distributor register {offset:#x}"), e))?;
    }
    Ok(())
}

/// The vcpu with MPIDR_EL1 `mpidr`'s redistributor and CPU interface. A CPU-interface
/// register the GIC lacks (active priorities past its priority bits) is left out.
pub(crate) fn save_vcpu(fd: &DeviceFd, mpidr: u64, op: &'static str) -> Result<VcpuGic> {
    let aff = affinity(mpidr);
    let mut redist = Vec::with_capacity(GICR_REGS.len());
    for offset in GICR_REGS {
        let mut v = 0u32;
        access(
            fd,
            KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
            aff | u64::from(offset),
            &mut v,
            false,
        )
        .map_err(|e| gic_error(op, &format!("redistributor register {offset:#x}"), e))?;
        redist.push((offset, v));
    }
    let mut icc = Vec::with_capacity(ICC_REGS.len());
    for reg in ICC_REGS {
        let mut v = 0u64;
        if access(
            fd,
            KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS,
            aff | u64::from(reg),
            &mut v,
            false,
        )
        .is_ok()
        {
            icc.push((reg, v));
        }
    }
    Ok(VcpuGic { mpidr, redist, icc })
}

pub(crate) fn restore_vcpu(fd: &DeviceFd, gic: &VcpuGic, op: &'static str) -> Result<()> {
    let aff = affinity(gic.mpidr);
    for &(offset, mut v) in &gic.redist {
        access(
            fd,
            KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
            aff | u64::from(offset),
            &mut v,
            true,
        )
        .map_err(|e| gic_error(op, &format!("redistributor register {offset:#x}"), e))?;
    }
    for &(reg, mut v) in &gic.icc {
        access(fd, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, aff | u64::from(reg), &mut v, true)
            .map_err(|e| gic_error(op, &format!("CPU interface register {reg:#x}"), e))?;
    }
    Ok(())
}
