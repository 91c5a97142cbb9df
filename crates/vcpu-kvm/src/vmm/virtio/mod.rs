//! virtio devices on the MMIO bus (virtio-mmio, version 2), with rust-vmm's
//! virtio-queue and vm-memory: the transport (`mmio.rs`), guest RAM as devices see it
//! (`guest_ram.rs`), what a device implements (`device.rs`), and the devices.

mod block;
mod device;
mod guest_ram;
mod mmio;
mod rng;

pub use block::Block;
pub use device::{BadRequest, Chain, VirtioDevice};
pub use guest_ram::{guest_ram, GuestRam, WrittenPages};
pub use mmio::{MmioTransport, MMIO_SIZE};
pub use rng::Rng;
