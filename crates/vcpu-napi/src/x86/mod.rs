//! The x86 surface of the binding: register and device state, CPUID, interrupts and
//! long mode. Conversion only; `vcpu_kvm` does the work.

mod cpuid;
mod events;
mod regs;
mod state;

use napi::bindgen_prelude::*;
use napi_derive::napi;

pub use cpuid::CpuidEntry;

use crate::args::u64_of;
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
}
