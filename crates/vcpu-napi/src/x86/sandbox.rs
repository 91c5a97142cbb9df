//! The sandbox machine's loader, for the facade's `Sandbox`.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::vmm::x86_64::sandbox::load_sandbox_guest;

use crate::error::{IntoNapi, Result};
use crate::vcpu::NativeVcpu;

/// Where a loaded sandbox guest starts.
#[napi(object)]
pub struct SandboxGuest {
    pub entry: f64,
    pub end: f64,
    pub stack_top: f64,
}

#[napi]
impl NativeVcpu {
    /// Loads a sandbox guest's ELF and the sandbox machine into this vcpu's (new) VM.
    #[napi]
    pub fn load_sandbox_guest(&self, elf: Uint8Array) -> Result<SandboxGuest> {
        let g = self.with("loadSandboxGuest", |v| load_sandbox_guest(v.vm(), v, &elf).js())?;
        Ok(SandboxGuest {
            entry: g.entry as f64,
            end: g.end as f64,
            stack_top: g.stack_top as f64,
        })
    }
}
