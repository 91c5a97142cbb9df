//! The napi-rs binding of `vcpu-kvm`: `#[napi]` classes that convert arguments and
//! results and delegate. No decoding happens here; the TypeScript facade in `ts/` gives
//! it the documented API.

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod args;
mod async_runner;
#[cfg(all(feature = "bench", target_arch = "x86_64"))]
pub mod bench;
#[cfg(all(feature = "bench", target_arch = "x86_64"))]
mod bench_floor;
mod bound_fns;
mod deadline;
mod error;
pub mod exits;
mod external;
mod gdb;
mod handles;
mod js_callback;
mod js_device;
mod kvm;
mod linux;
mod vcpu;
mod vm;
mod vm_events;
#[cfg(target_arch = "x86_64")]
mod x86;

use napi_derive::napi;

/// What a vcpu thread adds to its final exit's code (see `async_runner::AsyncCallback`).
#[napi]
pub fn async_final_phase() -> u32 {
    async_runner::PHASE_FINAL
}

/// Kicks the vcpu whose `signalHandleId()` is `id`, from any thread or worker: sets its
/// immediate exit and signals the thread inside `KVM_RUN`. False if it no longer exists.
#[napi]
pub fn kick_vcpu(id: f64) -> bool {
    id.fract() == 0.0 && id > 0.0 && handles::kick(id as u64)
}

/// For process exit: kicks every vcpu of the process out of the guest and makes later
/// runs return at once, so Node can join worker threads that were running guests.
#[napi]
pub fn shutdown() {
    handles::shutdown();
}

/// The hypercall ABI's default port.
#[napi]
pub fn default_hypercall_port() -> u32 {
    vcpu_kvm::kvm::DEFAULT_HYPERCALL_PORT.into()
}

/// Where `bootLinux` puts guest RAM: 0 on x86, 2 GiB on arm64 (below it sit the GIC
/// and the UART).
#[napi]
pub fn linux_ram_start() -> f64 {
    #[cfg(target_arch = "x86_64")]
    return 0.0;
    #[cfg(target_arch = "aarch64")]
    return vcpu_kvm::arch::aarch64::layout::RAM_START as f64;
}
