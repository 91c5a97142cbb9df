//! MSR exits (`KVM_CAP_X86_USER_SPACE_MSR`): a guest's `rdmsr`/`wrmsr` answered by
//! userspace. The exit is described in the record; the answer goes into `kvm_run`.

use crate::error::Result;
use crate::kvm::vcpu::KvmVcpu;
use crate::record::Pending;

/// One MSR access by the guest, for its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrAccess {
    /// The MSR's index (ECX).
    pub index: u32,
    /// True for `wrmsr`.
    pub write: bool,
    /// The value written; for a read, what the guest gets in EDX:EAX (0 unless set).
    pub data: u64,
    /// Set to give the guest #GP instead.
    pub fault: bool,
}

impl KvmVcpu {
    /// After an `MsrAccess` exit, on the same thread: calls `handle_fn` with the access;
    /// a read gets its `data`, and `fault` gives the guest #GP.
    pub fn handle_msr(&self, handle_fn: &mut dyn FnMut(&mut MsrAccess) -> Result<()>) -> Result<()> {
        self.begin(Pending::Msr, "handleMsr")?;
        let rec = *self.record();
        let mut access = MsrAccess {
            index: rec.msr_index as u32,
            write: rec.msr_write != 0,
            data: rec.msr_data,
            fault: rec.msr_fault != 0,
        };
        let result = handle_fn(&mut access);
        self.end();
        result?;
        let rec = self.record();
        rec.msr_data = access.data;
        rec.msr_fault = access.fault.into();
        self.write_msr_answer();
        Ok(())
    }

    /// After a handler set the answer in the record (`msrData`, `msrFault`): writes it
    /// where the guest reads it and completes the exit. For callers that let a handler
    /// fill the record in place (the JS facade); [`Self::handle_msr`] does this itself.
    pub fn complete_msr(&self) -> Result<()> {
        self.begin(Pending::Msr, "handleMsr")?;
        self.end();
        self.write_msr_answer();
        Ok(())
    }

    fn write_msr_answer(&self) {
        let rec = *self.record();
        let run = self.kvm_run();
        // SAFETY: the last exit was an MSR exit (Pending::Msr was checked), so `msr` is
        // the live member of the union; plain old data.
        let msr = unsafe { &mut run.__bindgen_anon_1.msr };
        msr.error = (rec.msr_fault != 0).into();
        if rec.msr_write == 0 {
            msr.data = rec.msr_data;
        }
    }
}
