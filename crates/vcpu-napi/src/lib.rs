//! The napi-rs binding of `vcpu-kvm`: `#[napi]` classes that convert arguments and
//! results and delegate. No decoding happens here; the TypeScript facade in `ts/` gives
//! it the documented API.

mod args;
pub mod bench;
mod error;
mod exits;
mod external;
mod kvm;
mod linux;
mod vcpu;
mod vm;
mod x86;

use napi_derive::napi;

/// The exit kinds, in the order of the codes `NativeVcpu.run()` returns.
#[napi]
pub fn exit_kinds() -> Vec<&'static str> {
    vcpu_kvm::VcpuExit::KINDS.to_vec()
}

/// Kicks the vcpu whose `signalHandleId()` is `id`, from any thread or worker: sets its
/// immediate exit and signals the thread inside `KVM_RUN`. False if it no longer exists.
#[napi]
pub fn kick_vcpu(id: f64) -> bool {
    id.fract() == 0.0 && id > 0.0 && vcpu_kvm::kvm::kick_by_id(id as u64)
}

/// For process exit: kicks every vcpu of the process out of the guest and makes later
/// runs return at once, so Node can join worker threads that were running guests.
#[napi]
pub fn shutdown() {
    vcpu_kvm::kvm::shutdown();
}

/// The hypercall ABI's default port.
#[napi]
pub fn default_hypercall_port() -> u32 {
    vcpu_kvm::kvm::DEFAULT_HYPERCALL_PORT.into()
}
