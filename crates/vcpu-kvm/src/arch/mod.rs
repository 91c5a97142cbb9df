//! Architecture-specific guest layout and boot state.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
