//! x86-64: where things go in guest memory and the state a vcpu enters long mode with.
//! Pure data and small functions: no KVM here (the backend and the VMM layer use it).

pub mod layout;
pub mod long_mode;
pub mod sandbox;
