//! The VMM layer above the backend: loading Linux (per architecture), the devices a
//! Linux guest needs, what a Linux machine adds to a snapshot, and the GDB stub. It uses
//! `kvm` and `arch`; neither uses it.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
// The UART (COM1's ports on x86, MMIO on arm64), the i8042 reset line and the MMIO bus.
pub mod devices;
pub mod machine_state;
// virtio over MMIO: the transport and devices are arch-neutral.
pub mod gdb;
pub mod virtio;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub mod linux;
