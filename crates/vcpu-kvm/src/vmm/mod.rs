//! The VMM layer above the backend: loading Linux, the MP table, the legacy devices a
//! Linux guest needs, and the GDB stub. It uses `kvm` and `arch`; neither uses it.

// The legacy PC devices (COM1 and the i8042 on ports) exist only on x86.
#[cfg(target_arch = "x86_64")]
pub mod devices;
// virtio over MMIO: the transport and devices are arch-neutral.
pub mod virtio;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;
// The GDB stub describes x86-64 registers; arm64's are not written yet.
#[cfg(target_arch = "x86_64")]
pub mod gdb;
