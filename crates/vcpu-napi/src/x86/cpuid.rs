//! CPUID entries as JS objects, and `Kvm.supportedCpuid()`.

use napi_derive::napi;
use vcpu_kvm::kvm_bindings::kvm_cpuid_entry2;

use crate::error::{IntoNapi, Result};
use crate::kvm::NativeKvm;

/// One `KVM_GET_SUPPORTED_CPUID` / `KVM_SET_CPUID2` entry.
#[napi(object)]
pub struct CpuidEntry {
    /// The leaf (EAX input).
    pub function: u32,
    /// The subleaf (ECX input).
    pub index: u32,
    /// KVM_CPUID_FLAG_* flags.
    pub flags: u32,
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

impl From<&kvm_cpuid_entry2> for CpuidEntry {
    fn from(e: &kvm_cpuid_entry2) -> Self {
        CpuidEntry {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }
}

impl From<&CpuidEntry> for kvm_cpuid_entry2 {
    fn from(e: &CpuidEntry) -> Self {
        kvm_cpuid_entry2 {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            ..Default::default()
        }
    }
}

#[napi]
impl NativeKvm {
    #[napi]
    pub fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        self.with("supportedCpuid", |k| {
            Ok(k.supported_cpuid().js()?.iter().map(CpuidEntry::from).collect())
        })
    }
}
