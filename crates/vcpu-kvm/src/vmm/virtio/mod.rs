//! virtio devices on the MMIO bus (virtio-mmio, version 2), with rust-vmm's
//! virtio-queue and vm-memory: the transport (`mmio.rs`), guest RAM as devices see it
//! (`guest_ram.rs`), what a device implements (`device.rs`), and the devices.

mod block;
mod console;
mod device;
mod guest_ram;
mod mmio;
mod net;
mod rng;
mod saved;
mod vsock;
mod worker;

pub use block::Block;
pub use console::{Console, ConsoleInput};
pub use device::{BadRequest, Chain, ChainReader, QueueIo, VirtioDevice};
pub use guest_ram::{guest_ram, GuestRam, WrittenPages};
pub use mmio::{MmioTransport, MMIO_SIZE};
pub use net::Net;
pub use rng::Rng;
pub use saved::{SavedDevice, SavedQueue, SavedTransport};
/// A descriptor of a chain, as virtio-queue reads it.
pub use virtio_queue::desc::split::Descriptor;
pub use vsock::Vsock;

use crate::error::{Error, Result};
use crate::kvm::KvmVm;

/// Where a machine's virtio devices start: below the 32-bit MMIO hole's usual devices,
/// above the RAM of a machine up to 3.25 GiB.
const MMIO_START: u64 = 0xd000_0000;
/// The first device's interrupt line (COM1 has 4); the IOAPIC's last pin is 23.
const FIRST_IRQ: u32 = 5;
/// How many devices fit the IOAPIC's pins.
pub const MAX_DEVICES: usize = 19;

/// Where the `index`th virtio device of a machine goes and the line it interrupts on:
/// 4 KiB windows from 0xd000_0000, or from the end of RAM (rounded up to 1 MiB) if RAM
/// reaches further. `EINVAL` past [`MAX_DEVICES`].
pub fn mmio_slot(vm: &KvmVm, index: usize) -> Result<(u64, u32)> {
    if index >= MAX_DEVICES {
        return Err(Error::invalid(
            "virtio",
            format!("virtio: at most {MAX_DEVICES} devices fit the interrupt controller"),
        ));
    }
    let ram_end = vm
        .regions()
        .iter()
        .map(|(_, r)| r.guest_address() + r.len() as u64)
        .max()
        .unwrap_or(0);
    let start = MMIO_START.max(ram_end.next_multiple_of(1 << 20));
    Ok((start + index as u64 * MMIO_SIZE, FIRST_IRQ + index as u32))
}
