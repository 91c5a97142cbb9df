//! The x86 surface of the binding: register and device state, CPUID, interrupts and
//! long mode. Conversion only; `vcpu_kvm` does the work.

mod cpuid;
mod events;
mod regs;
mod sandbox;
mod state;

use napi::bindgen_prelude::*;
use napi_derive::napi;

pub use cpuid::CpuidEntry;

use crate::args::{big, u64_of};
use crate::error::{IntoNapi, Result};
use crate::vcpu::NativeVcpu;

#[napi]
impl NativeVcpu {
    #[napi]
    pub fn interrupt(&self, vector: f64) -> Result<()> {
        let vector = crate::args::uint("interrupt", "vector", vector, 255.0)? as u32;
        self.with("interrupt", |v| v.interrupt(vector).js())
    }

    #[napi]
    pub fn nmi(&self) -> Result<()> {
        self.with("nmi", |v| v.nmi().js())
    }

    /// Long mode; with `rip`, also the general registers (all 0 but RIP, RSP, RFLAGS).
    #[napi]
    pub fn setup_long_mode(&self, rip: Option<BigInt>, rsp: Option<BigInt>) -> Result<()> {
        const OP: &str = "setupLongMode";
        let rip = rip.map(|r| u64_of(OP, "rip", &r)).transpose()?;
        let rsp = rsp.map(|r| u64_of(OP, "rsp", &r)).transpose()?.unwrap_or(0);
        self.with(OP, |v| match rip {
            Some(rip) => v.setup_long_mode_at(rip, rsp).js(),
            None => v.setup_long_mode().js(),
        })
    }

    /// `kvm_run.ready_for_interrupt_injection` and the guest's IF, as of the last exit.
    #[napi]
    pub fn ready_for_interrupt(&self) -> Result<bool> {
        self.with("readyForInterrupt", |v| Ok(v.ready_for_interrupt()))
    }

    /// `kvm_run.request_interrupt_window`.
    #[napi]
    pub fn set_interrupt_window_requested(&self, requested: bool) -> Result<()> {
        self.with("setInterruptWindowRequested", |v| {
            v.set_interrupt_window_requested(requested);
            Ok(())
        })
    }

    /// `KVM_TRANSLATE`.
    #[napi]
    pub fn translate_gva(&self, gva: BigInt) -> Result<Translation> {
        let gva = u64_of("translateGva", "gva", &gva)?;
        self.with("translateGva", |v| {
            let t = v.translate(gva).js()?;
            Ok(Translation {
                gpa: big(t.physical_address),
                valid: t.valid != 0,
                writeable: t.writeable != 0,
                usermode: t.usermode != 0,
            })
        })
    }

    /// `KVM_GET_CPUID2`.
    #[napi]
    pub fn get_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        self.with("getCpuid", |v| {
            Ok(v.get_cpuid().js()?.iter().map(CpuidEntry::from).collect())
        })
    }
}

/// What `KVM_TRANSLATE` says of a guest virtual address.
#[napi(object)]
pub struct Translation {
    pub gpa: BigInt,
    pub valid: bool,
    pub writeable: bool,
    pub usermode: bool,
}
