//! x86-64 machine set-up: the Linux boot protocol, the MP table and the sandbox machine.

pub mod linux;
pub mod mptable;
pub mod sandbox;
