//! x86-64: where things go in guest memory and how a vcpu enters long mode.

pub mod layout;
pub mod linux;
pub mod long_mode;
pub mod mptable;
