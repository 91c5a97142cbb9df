//! Architecture-specific guest layout and boot state.

pub mod x86_64;
