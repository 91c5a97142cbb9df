//! What a virtio device implements; the transport (`mmio.rs`) does the rest.

use virtio_queue::DescriptorChain;

use super::guest_ram::GuestRam;

/// A request the driver got wrong: the device drops it (used with length 0) and the
/// transport logs the first one.
#[derive(Debug)]
pub struct BadRequest(pub String);

/// A chain of descriptors taken from a queue.
pub type Chain<'a> = DescriptorChain<&'a GuestRam>;

/// A virtio device behind a transport. Runs on the device's own thread.
pub trait VirtioDevice: Send {
    /// The virtio device id (`VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// The feature bits it offers (the transport adds `VIRTIO_F_VERSION_1`).
    fn features(&self) -> u64;
    /// Each queue's maximum size (a power of two).
    fn queue_max_sizes(&self) -> &[u16];
    /// Its configuration space.
    fn config(&self) -> &[u8];
    /// Serves one request from queue `queue`: the bytes it wrote into the chain's
    /// writable buffers.
    fn serve(&mut self, queue: usize, chain: Chain<'_>, mem: &GuestRam) -> Result<u32, BadRequest>;
    /// The driver reset the device.
    fn reset(&mut self) {}
}
