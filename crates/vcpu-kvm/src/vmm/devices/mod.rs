//! The few legacy PC devices a Linux guest needs to reach a shell, emulated in the
//! exit path (no round trip to JS per byte of console output).

mod legacy;

pub use legacy::{DeviceState, LegacyDevices, SerialOutput, COM1_BASE, COM1_IRQ, I8042_BASE};
