//! What an x86 snapshot holds beyond memory: the VM's irqchip, PIT and clock, and each
//! vcpu's whole state, saved and restored in the orders KVM needs (Firecracker's).

use std::sync::OnceLock;

use kvm_bindings::*;
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::kvm::vcpu::KvmVcpu;
use crate::kvm::Kvm;
use crate::Vcpu;

/// `KVM_GET_MSRS` reads at most this many at once.
const MSR_BATCH: usize = KVM_MAX_MSR_ENTRIES;

/// The VM-wide devices KVM emulates.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct VmSnapshot {
    /// PIC master, PIC slave, IOAPIC (with the in-kernel irqchip).
    irqchip: Option<[kvm_irqchip; 3]>,
    pit: Option<kvm_pit_state2>,
    clock: kvm_clock_data,
}

/// One vcpu's state.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct VcpuSnapshot {
    pub(crate) id: u32,
    cpuid: Vec<kvm_cpuid_entry2>,
    mp_state: kvm_mp_state,
    regs: kvm_regs,
    sregs: kvm_sregs,
    /// The `kvm_xsave` region (4 KiB; KVM_CAP_XSAVE2's larger buffers are not used).
    xsave: Vec<u32>,
    xcrs: kvm_xcrs,
    debug_regs: kvm_debugregs,
    lapic: Option<kvm_lapic_state>,
    /// Every MSR KVM lists as saveable that this vcpu has, the TSC among them.
    msrs: Vec<kvm_msr_entry>,
    events: kvm_vcpu_events,
}

const OP: &str = "snapshot";
const RESTORE: &str = "restoreVm";

/// The most MSRs a saved vcpu may hold: KVM's list of saveable MSRs has a few hundred.
const MAX_SAVED_MSRS: usize = 4096;

impl VmSnapshot {
    /// Whether this state fits a VM with (or without) the in-kernel irqchip.
    pub(crate) fn check(&self, irqchip: bool) -> std::result::Result<(), String> {
        if self.irqchip.is_some() != irqchip || self.pit.is_some() != irqchip {
            let has = if irqchip { "lacks" } else { "has" };
            return Err(format!(
                "its VM state {has} irqchip and PIT state for a VM {} the in-kernel irqchip",
                if irqchip { "with" } else { "without" }
            ));
        }
        Ok(())
    }
}

impl VcpuSnapshot {
    /// Whether each part has the size KVM takes.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let id = self.id;
        if self.cpuid.len() > KVM_MAX_CPUID_ENTRIES {
            return Err(format!(
                "vcpu {id} has {} CPUID entries (KVM takes at most {KVM_MAX_CPUID_ENTRIES})",
                self.cpuid.len()
            ));
        }
        if self.msrs.len() > MAX_SAVED_MSRS {
            return Err(format!(
                "vcpu {id} has {} saved MSRs (at most {MAX_SAVED_MSRS})",
                self.msrs.len()
            ));
        }
        if self.xsave.len() != kvm_xsave::default().region.len() {
            return Err(format!("vcpu {id}'s XSAVE area has {} words", self.xsave.len()));
        }
        Ok(())
    }
}

pub(crate) fn save_vm(_arch: &super::VmArch, fd: &VmFd, irqchip: bool) -> Result<VmSnapshot> {
    let irqchip = if irqchip {
        let chip = |id| {
            let mut c = kvm_irqchip {
                chip_id: id,
                ..Default::default()
            };
            fd.get_irqchip(&mut c).op(OP).map(|()| c)
        };
        Some([
            chip(KVM_IRQCHIP_PIC_MASTER)?,
            chip(KVM_IRQCHIP_PIC_SLAVE)?,
            chip(KVM_IRQCHIP_IOAPIC)?,
        ])
    } else {
        None
    };
    let pit = match irqchip {
        Some(_) => Some(fd.get_pit2().op(OP)?),
        None => None,
    };
    Ok(VmSnapshot {
        irqchip,
        pit,
        clock: fd.get_clock().op(OP)?,
    })
}

pub(crate) fn restore_vm(arch: &super::VmArch, fd: &VmFd, vm: &VmSnapshot) -> Result<()> {
    reset_vm(arch, fd, vm)?;
    let mut clock = vm.clock;
    // KVM_SET_CLOCK takes only the flags it defines for setting; "TSC stable" is a
    // property it reports.
    clock.flags &= !KVM_CLOCK_TSC_STABLE;
    fd.set_clock(&clock).op(RESTORE)
}

/// What a reset in place restores of the VM: the irqchip and PIT. (The clock runs on:
/// a guest's time does not go back.)
pub(crate) fn reset_vm(_arch: &super::VmArch, fd: &VmFd, vm: &VmSnapshot) -> Result<()> {
    if let Some(chips) = &vm.irqchip {
        for chip in chips {
            fd.set_irqchip(chip).op(RESTORE)?;
        }
    }
    if let Some(pit) = &vm.pit {
        fd.set_pit2(pit).op(RESTORE)?;
    }
    Ok(())
}

/// The MSRs KVM can save and restore (`KVM_GET_MSR_INDEX_LIST`), asked once per process.
pub(crate) fn saveable_msrs(kvm: &Kvm) -> Result<&'static [u32]> {
    static LIST: OnceLock<Vec<u32>> = OnceLock::new();
    if let Some(l) = LIST.get() {
        return Ok(l);
    }
    let list = kvm.fd().get_msr_index_list().op("createVm")?;
    Ok(LIST.get_or_init(|| list.as_slice().to_vec()))
}

pub(crate) fn save_vcpu(vcpu: &KvmVcpu, irqchip: bool) -> Result<VcpuSnapshot> {
    let fd = vcpu.fd(OP)?;
    // Firecracker's order: MP state first (reading it can make KVM settle pending
    // events), the events last.
    let mp_state = fd.get_mp_state().op(OP)?;
    let regs = vcpu.get_regs()?;
    let sregs = fd.get_sregs().op(OP)?;
    let xsave = fd.get_xsave().op(OP)?.region.to_vec();
    let xcrs = fd.get_xcrs().op(OP)?;
    let debug_regs = fd.get_debug_regs().op(OP)?;
    let lapic = if irqchip { Some(fd.get_lapic().op(OP)?) } else { None };
    let msrs = read_msrs(vcpu, vcpu.vm.shared().arch.saveable_msrs)?;
    let events = fd.get_vcpu_events().op(OP)?;
    let cpuid = fd.get_cpuid2(KVM_MAX_CPUID_ENTRIES).op(OP)?.as_slice().to_vec();
    Ok(VcpuSnapshot {
        id: vcpu.id() as u32,
        cpuid,
        mp_state,
        regs,
        sregs,
        xsave,
        xcrs,
        debug_regs,
        lapic,
        msrs,
        events,
    })
}

/// Every MSR of `list` the vcpu has: `KVM_GET_MSRS` stops at the first one it lacks,
/// which is skipped.
fn read_msrs(vcpu: &KvmVcpu, list: &[u32]) -> Result<Vec<kvm_msr_entry>> {
    let fd = vcpu.fd(OP)?;
    let mut saved = Vec::with_capacity(list.len());
    let mut next = 0;
    while next < list.len() {
        let batch = &list[next..(next + MSR_BATCH).min(list.len())];
        let mut msrs = super::state::msr_query(OP, batch)?;
        let n = fd.get_msrs(&mut msrs).op(OP)?;
        saved.extend_from_slice(&msrs.as_slice()[..n]);
        next += n;
        if n < batch.len() {
            next += 1; // the one it could not read
        }
    }
    Ok(saved)
}

pub(crate) fn restore_vcpu(vcpu: &KvmVcpu, s: &VcpuSnapshot) -> Result<()> {
    let fd = vcpu.fd(RESTORE)?;
    let cpuid = CpuId::from_entries(&s.cpuid).map_err(|_| Error::invalid(RESTORE, "too many CPUID entries"))?;
    fd.set_cpuid2(&cpuid).op(RESTORE)?;
    reset_vcpu(vcpu, s)
}

/// What a reset in place restores of a vcpu: everything but its CPUID, which a vcpu
/// that has run keeps (KVM refuses another).
pub(crate) fn reset_vcpu(vcpu: &KvmVcpu, s: &VcpuSnapshot) -> Result<()> {
    let fd = vcpu.fd(RESTORE)?;
    fd.set_mp_state(s.mp_state).op(RESTORE)?;
    vcpu.set_regs(&s.regs)?;
    fd.set_sregs(&s.sregs).op(RESTORE)?;
    let mut xsave = kvm_xsave::default();
    if s.xsave.len() != xsave.region.len() {
        return Err(Error::invalid(RESTORE, "the snapshot's XSAVE area has the wrong size"));
    }
    xsave.region.copy_from_slice(&s.xsave);
    vcpu.set_xsave(&xsave)?;
    fd.set_xcrs(&s.xcrs).op(RESTORE)?;
    fd.set_debug_regs(&s.debug_regs).op(RESTORE)?;
    if let Some(lapic) = &s.lapic {
        fd.set_lapic(lapic).op(RESTORE)?;
    }
    write_msrs(vcpu, &s.msrs)?;
    fd.set_vcpu_events(&s.events).op(RESTORE)
}

/// Writes the saved MSRs. Some KVMs refuse a host write of an MSR the guest never
/// enabled (a paravirtual one still 0) although it reads back as that value: an MSR
/// refused while it already holds the saved value is skipped; any other refusal fails.
fn write_msrs(vcpu: &KvmVcpu, saved: &[kvm_msr_entry]) -> Result<()> {
    let fd = vcpu.fd(RESTORE)?;
    let mut rest = saved;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(MSR_BATCH)];
        let msrs = Msrs::from_entries(batch).map_err(|_| Error::invalid(RESTORE, "too many MSRs"))?;
        let n = fd.set_msrs(&msrs).op(RESTORE)?;
        if n < batch.len() {
            let refused = batch[n];
            let now = vcpu
                .get_msrs(&[refused.index])
                .ok()
                .and_then(|v| v.first().map(|e| e.1));
            if now != Some(refused.data) {
                return Err(Error::invalid(
                    RESTORE,
                    format!("this host refused MSR {:#x} of the snapshot", refused.index),
                ));
            }
            rest = &rest[n + 1..];
        } else {
            rest = &rest[n..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vcpu() -> VcpuSnapshot {
        VcpuSnapshot {
            id: 0,
            cpuid: Vec::new(),
            mp_state: Default::default(),
            regs: Default::default(),
            sregs: Default::default(),
            xsave: vec![0; kvm_xsave::default().region.len()],
            xcrs: Default::default(),
            debug_regs: Default::default(),
            lapic: None,
            msrs: Vec::new(),
            events: Default::default(),
        }
    }

    #[test]
    fn counts_kvm_would_refuse_are_refused_first() {
        assert!(vcpu().check().is_ok());
        let many_msrs = VcpuSnapshot {
            msrs: vec![Default::default(); 100_000],
            ..vcpu()
        };
        assert!(many_msrs.check().unwrap_err().contains("100000 saved MSRs"));
        let many_cpuid = VcpuSnapshot {
            cpuid: vec![Default::default(); KVM_MAX_CPUID_ENTRIES + 1],
            ..vcpu()
        };
        assert!(many_cpuid.check().unwrap_err().contains("CPUID entries"));
        let short_xsave = VcpuSnapshot {
            xsave: vec![0; 3],
            ..vcpu()
        };
        assert!(short_xsave.check().unwrap_err().contains("XSAVE"));
        let vm = VmSnapshot {
            irqchip: None,
            pit: None,
            clock: Default::default(),
        };
        assert!(vm.check(false).is_ok());
        assert!(vm.check(true).unwrap_err().contains("irqchip"));
    }
}
