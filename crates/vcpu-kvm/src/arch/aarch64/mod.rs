//! arm64 guest layout: where the machine's devices and RAM sit.

pub mod layout;
