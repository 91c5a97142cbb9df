//! `VcpuExit`: why `run()` returned.

/// The reason a vcpu stopped running guest code, with crosvm's variant names.
///
/// `Io`, `Mmio` and `Hypercall` carry no payload, as in crosvm: the access is seen
/// through [`crate::Vcpu::handle_io`], [`crate::Vcpu::handle_mmio`] and
/// [`crate::Vcpu::handle_hypercall`], on the thread that called `run()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuExit {
    /// Port I/O: call `handle_io`.
    Io,
    /// An access to guest physical memory that no writable slot backs: call `handle_mmio`.
    Mmio,
    /// A hypercall (the port ABI or `KVM_EXIT_HYPERCALL`): call `handle_hypercall`.
    Hypercall,
    /// The guest executed `hlt` (only without an in-kernel irqchip).
    Hlt,
    /// The guest triple-faulted (or otherwise shut down).
    Shutdown,
    /// `KVM_EXIT_INTR` reported as an exit reason (an interrupted run is `Err(EINTR)`).
    Intr,
    /// The hardware refused to enter the guest.
    FailEntry {
        /// The hardware's reason code.
        hardware_entry_failure_reason: u64,
    },
    /// KVM could not go on (often an instruction its emulator does not handle).
    InternalError {
        /// KVM's `KVM_INTERNAL_ERROR_*` sub-code.
        suberror: u32,
    },
    /// The guest asked for a power-off (PSCI, ...).
    SystemEventShutdown,
    /// The guest asked for a reset.
    SystemEventReset,
    /// The guest reported a crash.
    SystemEventCrash,
    /// An exception KVM passes to userspace.
    Exception {
        /// The exception vector.
        exception: u32,
        /// The error code.
        error_code: u32,
    },
    /// A debug exit (single step or breakpoint set with `set_guest_debug`).
    Debug {
        /// The exception vector (1 = #DB, 3 = #BP).
        exception: u32,
        /// The guest's instruction pointer.
        pc: u64,
        /// The debug status register.
        dr6: u64,
        /// The debug control register.
        dr7: u64,
    },
    /// The guest can take an interrupt now (after `request_interrupt_window`).
    IrqWindowOpen,
    /// The in-kernel IOAPIC needs an EOI for a level-triggered vector (split irqchip).
    IoapicEoi {
        /// The vector.
        vector: u8,
    },
    /// `KVM_EXIT_SET_TPR`.
    SetTpr,
    /// `KVM_EXIT_TPR_ACCESS`.
    TprAccess,
    /// A bus lock was detected (`KVM_EXIT_X86_BUS_LOCK`).
    BusLock,
    /// `rdmsr`/`wrmsr` forwarded to userspace (`KVM_CAP_X86_USER_SPACE_MSR`).
    MsrAccess {
        /// The MSR number.
        index: u32,
        /// The value written, or the value the guest reads (0 unless set).
        data: u64,
        /// True for `wrmsr`.
        write: bool,
    },
    /// Any other KVM exit reason, raw. Never a panic.
    Unknown {
        /// `kvm_run.exit_reason`.
        reason: u32,
    },
}

impl VcpuExit {
    /// Every variant's name, as the TypeScript facade spells `kind`, in [`Self::index`]
    /// order.
    pub const KINDS: [&'static str; 20] = [
        "Io",
        "Mmio",
        "Hypercall",
        "Hlt",
        "Shutdown",
        "Intr",
        "FailEntry",
        "InternalError",
        "SystemEventShutdown",
        "SystemEventReset",
        "SystemEventCrash",
        "Exception",
        "Debug",
        "IrqWindowOpen",
        "IoapicEoi",
        "SetTpr",
        "TprAccess",
        "BusLock",
        "MsrAccess",
        "Unknown",
    ];

    /// The variant's position in [`Self::KINDS`]: a small number for cheap transport.
    pub fn index(&self) -> usize {
        match self {
            VcpuExit::Io => 0,
            VcpuExit::Mmio => 1,
            VcpuExit::Hypercall => 2,
            VcpuExit::Hlt => 3,
            VcpuExit::Shutdown => 4,
            VcpuExit::Intr => 5,
            VcpuExit::FailEntry { .. } => 6,
            VcpuExit::InternalError { .. } => 7,
            VcpuExit::SystemEventShutdown => 8,
            VcpuExit::SystemEventReset => 9,
            VcpuExit::SystemEventCrash => 10,
            VcpuExit::Exception { .. } => 11,
            VcpuExit::Debug { .. } => 12,
            VcpuExit::IrqWindowOpen => 13,
            VcpuExit::IoapicEoi { .. } => 14,
            VcpuExit::SetTpr => 15,
            VcpuExit::TprAccess => 16,
            VcpuExit::BusLock => 17,
            VcpuExit::MsrAccess { .. } => 18,
            VcpuExit::Unknown { .. } => 19,
        }
    }

    /// The variant's name.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::VcpuExit;

    #[test]
    fn every_variant_has_its_own_index_and_name() {
        let all = [
            VcpuExit::Io,
            VcpuExit::Mmio,
            VcpuExit::Hypercall,
            VcpuExit::Hlt,
            VcpuExit::Shutdown,
            VcpuExit::Intr,
            VcpuExit::FailEntry {
                hardware_entry_failure_reason: 1,
            },
            VcpuExit::InternalError { suberror: 1 },
            VcpuExit::SystemEventShutdown,
            VcpuExit::SystemEventReset,
            VcpuExit::SystemEventCrash,
            VcpuExit::Exception {
                exception: 6,
                error_code: 0,
            },
            VcpuExit::Debug {
                exception: 1,
                pc: 0,
                dr6: 0,
                dr7: 0,
            },
            VcpuExit::IrqWindowOpen,
            VcpuExit::IoapicEoi { vector: 1 },
            VcpuExit::SetTpr,
            VcpuExit::TprAccess,
            VcpuExit::BusLock,
            VcpuExit::MsrAccess {
                index: 0,
                data: 0,
                write: false,
            },
            VcpuExit::Unknown { reason: 99 },
        ];
        assert_eq!(all.len(), VcpuExit::KINDS.len());
        for (i, exit) in all.iter().enumerate() {
            assert_eq!(exit.index(), i, "{exit:?}");
            // The name is the variant's own, as Debug spells it.
            let debug = format!("{exit:?}");
            assert!(debug.starts_with(exit.kind()), "{debug} is not {}", exit.kind());
            let rest = &debug[exit.kind().len()..];
            assert!(
                rest.is_empty() || rest.starts_with(' '),
                "{debug} is not {}",
                exit.kind()
            );
        }
    }
}
