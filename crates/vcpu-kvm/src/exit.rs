//! `VcpuExit`: why `run()` returned.
//!
//! The one definition of the exit kinds: the enum below, written once through
//! [`vcpu_exits!`], which also derives each kind's name and code ([`VcpuExit::KINDS`],
//! [`VcpuExit::index`]), its payload as data ([`VcpuExit::fields`]) and a description of
//! every kind and field ([`VcpuExit::SCHEMA`]). The TypeScript `VcpuExit` type is
//! generated from that description (`scripts/exit-layout.js`), so a new exit kind is
//! one change here and `npm run build`.

/// One payload field of an exit kind, as [`VcpuExit::SCHEMA`] describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitField {
    /// The field's name in Rust (snake_case).
    pub name: &'static str,
    /// Its Rust type: `u8`, `u32`, `u64` or `bool`.
    pub ty: &'static str,
    /// Its documentation.
    pub doc: &'static str,
}

/// One exit kind, as [`VcpuExit::SCHEMA`] describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitKind {
    /// The variant's name, as `kind` spells it.
    pub name: &'static str,
    /// Its documentation.
    pub doc: &'static str,
    /// Its payload, in order.
    pub fields: &'static [ExitField],
}

/// A payload field's value ([`VcpuExit::fields`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitValue {
    /// A 64-bit value (a `bigint` in JS).
    U64(u64),
    /// A value of 32 bits or fewer (a `number` in JS).
    U32(u32),
    /// A flag.
    Bool(bool),
}

impl From<u64> for ExitValue {
    fn from(v: u64) -> Self {
        ExitValue::U64(v)
    }
}

impl From<u32> for ExitValue {
    fn from(v: u32) -> Self {
        ExitValue::U32(v)
    }
}

impl From<u8> for ExitValue {
    fn from(v: u8) -> Self {
        ExitValue::U32(v.into())
    }
}

impl From<bool> for ExitValue {
    fn from(v: bool) -> Self {
        ExitValue::Bool(v)
    }
}

/// Defines [`VcpuExit`] and everything derived from its variants (see the module notes).
macro_rules! vcpu_exits {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident $({ $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ident ),* $(,)? })?
    ),* $(,)?) => {
        /// The reason a vcpu stopped running guest code, with crosvm's variant names.
        ///
        /// `Io`, `Mmio` and `Hypercall` carry no payload, as in crosvm: the access is seen
        /// through [`crate::Vcpu::handle_io`], [`crate::Vcpu::handle_mmio`] and
        /// [`crate::Vcpu::handle_hypercall`], on the thread that called `run()`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum VcpuExit {
            $( $(#[doc = $doc])* $name $({ $( $(#[doc = $fdoc])* $field: $ty ),* })? ),*
        }

        /// The kinds in declaration order: their codes.
        #[allow(dead_code)]
        enum Code { $($name),* }

        impl VcpuExit {
            /// Every variant's name, as the TypeScript facade spells `kind`, in
            /// [`Self::index`] order.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Every kind with its documentation and payload fields, in [`Self::index`]
            /// order: what the TypeScript types are generated from.
            pub const SCHEMA: &'static [ExitKind] = &[$(ExitKind {
                name: stringify!($name),
                doc: concat!($($doc, "\n"),*),
                fields: &[$($(ExitField {
                    name: stringify!($field),
                    ty: stringify!($ty),
                    doc: concat!($($fdoc, "\n"),*),
                }),*)?],
            }),*];

            /// The variant's position in [`Self::KINDS`]: a small number for cheap
            /// transport.
            pub fn index(&self) -> usize {
                match self {
                    $(VcpuExit::$name { .. } => Code::$name as usize),*
                }
            }

            /// One exit of each kind, its fields at their defaults, in [`Self::index`]
            /// order (for tests).
            #[cfg(test)]
            fn one_of_each() -> Vec<VcpuExit> {
                vec![$(VcpuExit::$name { $($($field: Default::default()),*)? }),*]
            }

            /// The payload, field by field, as [`Self::SCHEMA`] names it.
            pub fn fields(&self) -> Vec<(&'static str, ExitValue)> {
                match *self {
                    $(VcpuExit::$name { $($($field),*)? } => vec![$($((stringify!($field), ExitValue::from($field))),*)?]),*
                }
            }
        }
    };
}

vcpu_exits! {
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
    /// The variant's name.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::VcpuExit;

    #[test]
    fn every_kind_has_its_own_code_name_and_payload_description() {
        let all = VcpuExit::one_of_each();
        assert_eq!(all.len(), VcpuExit::KINDS.len());
        assert_eq!(all.len(), VcpuExit::SCHEMA.len());
        for (i, exit) in all.iter().enumerate() {
            assert_eq!(exit.index(), i, "{exit:?}");
            let schema = &VcpuExit::SCHEMA[i];
            assert_eq!(schema.name, VcpuExit::KINDS[i]);
            assert!(!schema.doc.is_empty(), "{} has no documentation", schema.name);
            // The name is the variant's own, as Debug spells it.
            let debug = format!("{exit:?}");
            let rest = debug
                .strip_prefix(exit.kind())
                .unwrap_or_else(|| panic!("{debug} is not {}", exit.kind()));
            assert!(
                rest.is_empty() || rest.starts_with(' '),
                "{debug} is not {}",
                exit.kind()
            );
            // The payload has the fields the schema lists, in order, each documented.
            let names: Vec<_> = exit.fields().iter().map(|(n, _)| *n).collect();
            let described: Vec<_> = schema.fields.iter().map(|f| f.name).collect();
            assert_eq!(names, described, "{}", schema.name);
            for f in schema.fields {
                assert!(
                    matches!(f.ty, "u8" | "u32" | "u64" | "bool"),
                    "{}.{}: {}",
                    schema.name,
                    f.name,
                    f.ty
                );
                assert!(!f.doc.is_empty(), "{}.{} has no documentation", schema.name, f.name);
            }
        }
        let kinds: std::collections::HashSet<_> = VcpuExit::KINDS.iter().collect();
        assert_eq!(kinds.len(), VcpuExit::KINDS.len(), "a kind is named twice");
    }
}
