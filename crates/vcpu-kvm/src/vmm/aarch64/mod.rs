//! arm64 machine set-up: the Linux boot protocol and the device tree.

pub mod fdt;
pub mod linux;
