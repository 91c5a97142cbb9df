//! x86-64 machine set-up: the Linux boot protocol, the MP table, and what a Linux
//! machine adds to a snapshot.

pub mod linux;
pub mod machine_state;
pub mod mptable;
pub mod sandbox;
