//! The GICv2's state through KVM's device attributes (Documentation/virt/kvm/devices/
//! arm-vgic.rst): the distributor's registers — the shared interrupts' once, the banked
//! private ones (SGIs and PPIs) per vcpu — and each vcpu's CPU interface. An attribute
//! names the vcpu in bits 39:32 and the register's offset below.

use kvm_bindings::*;
use kvm_ioctls::DeviceFd;

use super::gic::{access, gic_error};
use crate::arch::aarch64::layout::{GIC_NR_IRQS, MAX_GIC_V2_CPUS};
use crate::error::Result;

/// One register: its attribute group (distributor or CPU interface), the attribute
/// (vcpu and offset) and its value.
pub(crate) type AttrReg = (u32, u64, u32);

/// The distributor's per-interrupt banks: offset, bits per interrupt, and whether its
/// private part is banked per vcpu (IGROUPR, ISENABLER, ISPENDR, ISACTIVER, IPRIORITYR,
/// ITARGETSR — whose private part only reads —, ICFGR).
const BANKS: [(u32, u32, bool); 7] = [
    (0x080, 1, true),
    (0x100, 1, true),
    (0x200, 1, true),
    (0x300, 1, true),
    (0x400, 8, true),
    (0x800, 8, false),
    (0xc00, 2, true),
];
/// GICD_CTLR, written last so the distributor comes on with its configuration.
const GICD_CTLR: u32 = 0x0;
/// GICD_SPENDSGIR: pending SGIs, banked per vcpu.
const GICD_SPENDSGIR: [u32; 4] = [0xf20, 0xf24, 0xf28, 0xf2c];
/// The CPU interface: GICC_CTLR, PMR, BPR, ABPR and the active priorities (APR0).
const GICC: [u32; 5] = [0x00, 0x04, 0x08, 0x1c, 0xd0];

fn attr(cpu: usize, offset: u32) -> u64 {
    (cpu as u64) << KVM_DEV_ARM_VGIC_CPUID_SHIFT | u64::from(offset)
}

/// Whether `reg` names a register this module saves (what a restore may write).
pub(crate) fn is_known(reg: &AttrReg) -> bool {
    let (group, attr, _) = *reg;
    let cpu = (attr >> KVM_DEV_ARM_VGIC_CPUID_SHIFT) as usize;
    matches!(group, KVM_DEV_ARM_VGIC_GRP_DIST_REGS | KVM_DEV_ARM_VGIC_GRP_CPU_REGS)
        && cpu < MAX_GIC_V2_CPUS
        && attr & 0xffff_ffff < 0x1000
}

/// Every register of the GIC, for the vcpus it has (found by asking for each one's
/// CPU interface until one is missing).
pub(crate) fn save(fd: &DeviceFd, op: &'static str) -> Result<Vec<AttrReg>> {
    let read = |group: u32, attr: u64| {
        let mut v = 0u32;
        access(fd, group, attr, &mut v, false).map(|()| v)
    };
    let cpus = (0..MAX_GIC_V2_CPUS)
        .take_while(|&c| read(KVM_DEV_ARM_VGIC_GRP_CPU_REGS, attr(c, 0)).is_ok())
        .count();
    let mut wanted: Vec<(u32, u64)> = Vec::new();
    let dist = KVM_DEV_ARM_VGIC_GRP_DIST_REGS;
    for (base, bits, banked) in BANKS {
        let private_end = base + 32 * bits / 8;
        wanted.extend(
            (private_end..base + GIC_NR_IRQS * bits / 8)
                .step_by(4)
                .map(|o| (dist, attr(0, o))),
        );
        if banked {
            for cpu in 0..cpus {
                wanted.extend((base..private_end).step_by(4).map(|o| (dist, attr(cpu, o))));
            }
        }
    }
    for cpu in 0..cpus {
        wanted.extend(GICD_SPENDSGIR.iter().map(|&o| (dist, attr(cpu, o))));
        wanted.extend(GICC.iter().map(|&o| (KVM_DEV_ARM_VGIC_GRP_CPU_REGS, attr(cpu, o))));
    }
    wanted.push((dist, attr(0, GICD_CTLR)));
    wanted
        .into_iter()
        .map(|(group, a)| {
            read(group, a)
                .map(|v| (group, a, v))
                .map_err(|e| gic_error(op, &format!("register {a:#x} (group {group})"), e))
        })
        .collect()
}

/// Writes the saved registers back, in the order they were saved.
pub(crate) fn restore(fd: &DeviceFd, regs: &[AttrReg], op: &'static str) -> Result<()> {
    for &(group, a, mut v) in regs {
        access(fd, group, a, &mut v, true)
            .map_err(|e| gic_error(op, &format!("register {a:#x} (group {group})"), e))?;
    }
    Ok(())
}
