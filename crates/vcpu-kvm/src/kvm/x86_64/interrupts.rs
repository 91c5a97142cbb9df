//! Interrupts without the in-kernel irqchip, as crosvm's `VcpuX86_64`: readiness, the
//! interrupt window, injection; and NMIs.

use kvm_bindings::*;

use crate::error::{Context, Error, ErrorCode, Result};
use crate::kvm::ioctls;
use crate::kvm::vcpu::KvmVcpu;

impl KvmVcpu {
    /// Whether the guest can take an external interrupt now: KVM's
    /// `ready_for_interrupt_injection` and the guest's IF, as of the last exit.
    pub fn ready_for_interrupt(&self) -> bool {
        let run = self.kvm_run();
        run.ready_for_interrupt_injection != 0 && run.if_flag != 0
    }

    /// Sets `kvm_run.request_interrupt_window`: while set, a run exits with
    /// `IrqWindowOpen` as soon as the guest can take an interrupt.
    pub fn set_interrupt_window_requested(&self, requested: bool) {
        self.kvm_run().request_interrupt_window = requested.into();
    }

    /// `KVM_INTERRUPT`: injects external interrupt `vector` (only without the in-kernel
    /// irqchip). Refused with `EAGAIN` unless [`Self::ready_for_interrupt`], as crosvm's
    /// `interrupt()` does: the guest would not take it now. Request the window instead.
    pub fn interrupt(&self, vector: u32) -> Result<()> {
        const OP: &str = "interrupt";
        let fd = self.fd(OP)?;
        if !self.ready_for_interrupt() {
            return Err(Error::new(
                ErrorCode::Errno(libc::EAGAIN),
                OP,
                "interrupt: the guest cannot take an interrupt now (interrupts disabled, or \
                 not ready since the last exit); request the interrupt window and retry on \
                 IrqWindowOpen",
            ));
        }
        ioctls::interrupt(fd, vector).op(OP)
    }

    /// `KVM_NMI`: injects a non-maskable interrupt.
    pub fn nmi(&self) -> Result<()> {
        self.fd("nmi")?.nmi().op("nmi")
    }

    /// `KVM_TRANSLATE` with all it says: the guest physical address of guest virtual
    /// `gva` in the current page tables, and whether the mapping is valid, writeable and
    /// reachable from user mode.
    pub fn translate(&self, gva: u64) -> Result<kvm_translation> {
        self.fd("translateGva")?.translate_gva(gva).op("translateGva")
    }
}
