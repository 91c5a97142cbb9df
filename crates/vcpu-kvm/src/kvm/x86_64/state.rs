//! x86 register and device state, beyond the trait: what every VMM needs.

use kvm_bindings::*;

use super::{regs_pending_in_run, sync_regs};
use crate::error::{Context, Error, ErrorCode, Result};
use crate::kvm::vcpu::KvmVcpu;

/// The LAPIC ioctls fail with `EINVAL`/`ENXIO` when the VM has no in-kernel irqchip.
fn lapic_error(op: &'static str, errno: i32) -> Error {
    if errno == libc::EINVAL || errno == libc::ENXIO {
        return Error::new(
            ErrorCode::Errno(errno),
            op,
            format!("{op}: this VM has no in-kernel local APIC (create it with the irqchip option)"),
        );
    }
    Error::errno(op, errno)
}

/// A `KVM_GET_MSRS` request for `indices` (at most `KVM_MAX_MSR_ENTRIES`).
pub(super) fn msr_query(op: &'static str, indices: &[u32]) -> Result<Msrs> {
    let entries: Vec<kvm_msr_entry> = indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&entries).map_err(|_| Error::invalid(op, "too many MSRs in one call"))
}

/// x86 register and device state, beyond the trait (what every VMM needs).
impl KvmVcpu {
    /// `KVM_GET_REGS` (or the sync copy a hypercall result is still waiting in).
    pub fn get_regs(&self) -> Result<kvm_regs> {
        let fd = self.fd("getRegs")?;
        if regs_pending_in_run(self) {
            return Ok(*sync_regs(self));
        }
        fd.get_regs().op("getRegs")
    }

    /// `KVM_SET_REGS` (supersedes a hypercall result not yet delivered).
    pub fn set_regs(&self, regs: &kvm_regs) -> Result<()> {
        let fd = self.fd("setRegs")?;
        fd.set_regs(regs).op("setRegs")?;
        self.kvm_run().kvm_dirty_regs &= !(KVM_SYNC_X86_REGS as u64);
        Ok(())
    }

    /// `KVM_GET_SREGS`.
    pub fn get_sregs(&self) -> Result<kvm_sregs> {
        self.fd("getSregs")?.get_sregs().op("getSregs")
    }

    /// `KVM_SET_SREGS`.
    pub fn set_sregs(&self, sregs: &kvm_sregs) -> Result<()> {
        self.fd("setSregs")?.set_sregs(sregs).op("setSregs")
    }

    /// `KVM_GET_FPU`.
    pub fn get_fpu(&self) -> Result<kvm_fpu> {
        self.fd("getFpu")?.get_fpu().op("getFpu")
    }

    /// `KVM_SET_FPU`.
    pub fn set_fpu(&self, fpu: &kvm_fpu) -> Result<()> {
        self.fd("setFpu")?.set_fpu(fpu).op("setFpu")
    }

    /// `KVM_GET_MSRS` for `indices`: `(index, value)` pairs, in order. Fails with
    /// `EINVAL` naming the first MSR KVM does not have.
    pub fn get_msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>> {
        const OP: &str = "getMsrs";
        let fd = self.fd(OP)?;
        let mut msrs = msr_query(OP, indices)?;
        let n = fd.get_msrs(&mut msrs).op(OP)?;
        if n < indices.len() {
            return Err(Error::invalid(OP, format!("MSR {:#x} is not supported", indices[n])));
        }
        Ok(msrs.as_slice().iter().map(|e| (e.index, e.data)).collect())
    }

    /// `KVM_SET_MSRS`. Fails with `EINVAL` naming the first MSR KVM refused.
    pub fn set_msrs(&self, values: &[(u32, u64)]) -> Result<()> {
        const OP: &str = "setMsrs";
        let fd = self.fd(OP)?;
        let entries: Vec<kvm_msr_entry> = values
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| Error::invalid(OP, "too many MSRs in one call"))?;
        let n = fd.set_msrs(&msrs).op(OP)?;
        if n < values.len() {
            return Err(Error::invalid(OP, format!("MSR {:#x} could not be set", values[n].0)));
        }
        Ok(())
    }

    /// `KVM_SET_CPUID2`.
    pub fn set_cpuid(&self, entries: &[kvm_cpuid_entry2]) -> Result<()> {
        const OP: &str = "setCpuid";
        let fd = self.fd(OP)?;
        let cpuid = CpuId::from_entries(entries)
            .map_err(|_| Error::invalid(OP, format!("at most {KVM_MAX_CPUID_ENTRIES} CPUID entries")))?;
        fd.set_cpuid2(&cpuid).op(OP)
    }

    /// `KVM_GET_LAPIC` (needs the in-kernel irqchip).
    pub fn get_lapic(&self) -> Result<kvm_lapic_state> {
        self.fd("getLapic")?
            .get_lapic()
            .map_err(|e| lapic_error("getLapic", e.errno()))
    }

    /// `KVM_SET_LAPIC` (needs the in-kernel irqchip).
    pub fn set_lapic(&self, lapic: &kvm_lapic_state) -> Result<()> {
        self.fd("setLapic")?
            .set_lapic(lapic)
            .map_err(|e| lapic_error("setLapic", e.errno()))
    }

    /// `KVM_GET_VCPU_EVENTS`.
    pub fn get_vcpu_events(&self) -> Result<kvm_vcpu_events> {
        self.fd("getVcpuEvents")?.get_vcpu_events().op("getVcpuEvents")
    }

    /// `KVM_SET_VCPU_EVENTS`.
    pub fn set_vcpu_events(&self, events: &kvm_vcpu_events) -> Result<()> {
        self.fd("setVcpuEvents")?.set_vcpu_events(events).op("setVcpuEvents")
    }

    /// `KVM_GET_MP_STATE`: `KVM_MP_STATE_*`.
    pub fn get_mp_state(&self) -> Result<u32> {
        Ok(self.fd("getMpState")?.get_mp_state().op("getMpState")?.mp_state)
    }

    /// `KVM_SET_MP_STATE`.
    pub fn set_mp_state(&self, mp_state: u32) -> Result<()> {
        self.fd("setMpState")?
            .set_mp_state(kvm_mp_state { mp_state })
            .op("setMpState")
    }

    /// `KVM_GET_DEBUGREGS`.
    pub fn get_debug_regs(&self) -> Result<kvm_debugregs> {
        self.fd("getDebugRegs")?.get_debug_regs().op("getDebugRegs")
    }

    /// `KVM_SET_DEBUGREGS`.
    pub fn set_debug_regs(&self, regs: &kvm_debugregs) -> Result<()> {
        self.fd("setDebugRegs")?.set_debug_regs(regs).op("setDebugRegs")
    }

    /// `KVM_GET_XSAVE`.
    pub fn get_xsave(&self) -> Result<kvm_xsave> {
        self.fd("getXsave")?.get_xsave().op("getXsave")
    }

    /// `KVM_SET_XSAVE`.
    pub fn set_xsave(&self, xsave: &kvm_xsave) -> Result<()> {
        let fd = self.fd("setXsave")?;
        // SAFETY: a full `kvm_xsave` (4 KiB region); KVM reads only that much of it since
        // we never enabled KVM_CAP_XSAVE2's larger buffers.
        unsafe { fd.set_xsave(xsave) }.op("setXsave")
    }

    /// `KVM_GET_XCRS`.
    pub fn get_xcrs(&self) -> Result<kvm_xcrs> {
        self.fd("getXcrs")?.get_xcrs().op("getXcrs")
    }

    /// `KVM_SET_XCRS`.
    pub fn set_xcrs(&self, xcrs: &kvm_xcrs) -> Result<()> {
        self.fd("setXcrs")?.set_xcrs(xcrs).op("setXcrs")
    }

    /// `KVM_TRANSLATE`: the guest physical address of guest virtual `gva` in the current
    /// page tables, or `None` where nothing is mapped.
    pub fn translate_gva(&self, gva: u64) -> Result<Option<u64>> {
        let t = self.translate(gva)?;
        Ok((t.valid != 0).then_some(t.physical_address))
    }

    /// `KVM_GET_CPUID2`: the CPUID table the vcpu has.
    pub fn get_cpuid(&self) -> Result<Vec<kvm_cpuid_entry2>> {
        let cpuid = self.fd("getCpuid")?.get_cpuid2(KVM_MAX_CPUID_ENTRIES).op("getCpuid")?;
        Ok(cpuid.as_slice().to_vec())
    }
}
