//! x86-64 machine set-up: the Linux boot protocol and the MP table.

pub mod linux;
pub mod mptable;
