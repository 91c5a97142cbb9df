//! x86-64 machine set-up: the Linux boot protocol, the MP table, the ACPI tables and the
//! sandbox machine.

pub mod acpi;
pub mod linux;
pub mod mptable;
pub mod sandbox;
