//! Pending exceptions, interrupts, NMIs and SMIs (`kvm_vcpu_events`) as JS objects.

use napi::bindgen_prelude::BigInt;
use napi_derive::napi;

/// Pending exception state (`kvm_vcpu_events.exception`).
#[napi(object)]
pub struct ExceptionEvent {
    /// Being injected.
    pub injected: u32,
    /// Vector.
    pub nr: u32,
    /// Whether it has an error code.
    pub has_error_code: u32,
    /// Pending.
    pub pending: u32,
    /// The error code.
    pub error_code: u32,
}

/// Interrupt state (`kvm_vcpu_events.interrupt`).
#[napi(object)]
pub struct InterruptEvent {
    /// Being injected.
    pub injected: u32,
    /// Vector.
    pub nr: u32,
    /// Software interrupt.
    pub soft: u32,
    /// Interrupt shadow (after `sti` or `mov ss`).
    pub shadow: u32,
}

/// NMI state (`kvm_vcpu_events.nmi`).
#[napi(object)]
pub struct NmiEvent {
    /// Being injected.
    pub injected: u32,
    /// Pending.
    pub pending: u32,
    /// NMIs masked.
    pub masked: u32,
}

/// SMM state (`kvm_vcpu_events.smi`).
#[napi(object)]
pub struct SmiEvent {
    /// In system management mode.
    pub smm: u32,
    /// Pending.
    pub pending: u32,
    /// SMM entered inside an NMI handler.
    pub smm_inside_nmi: u32,
    /// An INIT is latched.
    pub latched_init: u32,
}

/// `kvm_vcpu_events`.
#[napi(object)]
pub struct VcpuEvents {
    /// Exception state.
    pub exception: ExceptionEvent,
    /// External interrupt state.
    pub interrupt: InterruptEvent,
    /// NMI state.
    pub nmi: NmiEvent,
    /// The SIPI vector.
    pub sipi_vector: u32,
    /// Flags.
    pub flags: u32,
    /// SMM state.
    pub smi: SmiEvent,
    /// A triple fault is pending.
    pub triple_fault_pending: u32,
    /// Whether `exceptionPayload` is valid.
    pub exception_has_payload: u32,
    /// The exception payload (CR2 or DR6).
    pub exception_payload: BigInt,
}
