//! What a virtio device implements; the transport (`mmio.rs`) does the rest.

use std::os::unix::io::RawFd;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use super::guest_ram::GuestRam;

/// A request the driver got wrong: the device drops it (used with length 0) and the
/// transport logs the first one.
#[derive(Debug)]
pub struct BadRequest(pub String);

/// A chain of descriptors taken from a queue.
pub type Chain<'a> = DescriptorChain<&'a GuestRam>;

/// The readable buffers of a chain, as one stream.
pub type ChainReader<'a> = virtio_queue::Reader<'a, vm_memory::bitmap::MS<'a, GuestRam>>;

/// A device's queues while it serves them: chains to take, used buffers to give back.
pub struct QueueIo<'a> {
    queues: &'a mut [Queue],
    mem: &'a GuestRam,
    complain: &'a dyn Fn(&str),
    pub(super) used: bool,
    pub(super) broken: Option<String>,
}

impl<'a> QueueIo<'a> {
    pub(super) fn new(queues: &'a mut [Queue], mem: &'a GuestRam, complain: &'a dyn Fn(&str)) -> Self {
        QueueIo {
            queues,
            mem,
            complain,
            used: false,
            broken: None,
        }
    }

    /// Guest RAM.
    pub fn mem(&self) -> &'a GuestRam {
        self.mem
    }

    /// The next chain the driver made available on `queue`, if any (none once the
    /// device needs a reset, or for a queue that is not set up).
    pub fn pop(&mut self, queue: usize) -> Option<Chain<'a>> {
        if self.broken.is_some() {
            return None;
        }
        let q = self.queues.get_mut(queue).filter(|q| q.ready())?;
        q.pop_descriptor_chain(self.mem)
    }

    /// Reads every available chain of `queue` (a queue the device only reads, such as a
    /// transmit queue) with `read`, and gives each back with 0 bytes written. What `read`
    /// or the chain gets wrong is logged, and that request dropped.
    pub fn read_each(&mut self, queue: usize, mut read: impl FnMut(&mut ChainReader<'a>) -> Result<(), String>) {
        while let Some(chain) = self.pop(queue) {
            let head = chain.head_index();
            let why = match chain.reader(self.mem) {
                Ok(mut r) => read(&mut r).err(),
                Err(e) => Some(format!("{e:?}")),
            };
            if let Some(why) = why {
                self.complain(&format!("dropped a request on queue {queue}: {why}"));
            }
            self.add_used(queue, head, 0);
        }
    }

    /// Puts the chain last taken from `queue` back, unused.
    pub fn unpop(&mut self, queue: usize) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.go_to_previous_position();
        }
    }

    /// Gives chain `head` of `queue` back with `len` bytes written into it.
    pub fn add_used(&mut self, queue: usize, head: u16, len: u32) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.add_used(self.mem, head, len).is_err() {
            self.broken = Some(format!("queue {queue}'s used ring is broken"));
        } else {
            self.used = true;
        }
    }

    /// Interrupts the driver when this work is done, used buffers or not.
    pub fn interrupt(&mut self) {
        self.used = true;
    }

    /// Logs what the driver got wrong (once per device).
    pub fn complain(&self, what: &str) {
        (self.complain)(what);
    }
}

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

    /// The driver notified `queue`. By default each available chain is served with
    /// [`VirtioDevice::serve`] and used.
    fn notified(&mut self, queue: usize, io: &mut QueueIo<'_>) {
        while let Some(chain) = io.pop(queue) {
            let head = chain.head_index();
            let len = match self.serve(queue, chain, io.mem()) {
                Ok(n) => n,
                Err(BadRequest(why)) => {
                    io.complain(&format!("dropped a request on queue {queue}: {why}"));
                    0
                }
            };
            io.add_used(queue, head, len);
        }
    }

    /// Serves one request from queue `queue`: the bytes it wrote into the chain's
    /// writable buffers.
    fn serve(&mut self, _queue: usize, _chain: Chain<'_>, _mem: &GuestRam) -> Result<u32, BadRequest> {
        Err(BadRequest("this queue takes no requests".into()))
    }

    /// The host-side descriptors the device thread should watch now, each with its
    /// token and whether it waits to write too (else only to read); a ready one is
    /// reported through [`VirtioDevice::host_event`]. Asked again after each event, so a
    /// device leaves out what it cannot serve yet (a socket to read while the driver has
    /// given no buffers).
    fn host_events(&self) -> Vec<(RawFd, u64, bool)> {
        Vec::new()
    }

    /// A watched descriptor with `token` is ready.
    fn host_event(&mut self, _token: u64, _io: &mut QueueIo<'_>) {}

    /// The driver reset the device.
    fn reset(&mut self) {}

    /// What a snapshot keeps to open the device again; `None` for one that cannot be
    /// saved (a device written in JS).
    fn saved(&self) -> Option<super::SavedDevice> {
        None
    }

    /// The device thread starts, with the queues live (after DRIVER_OK, or a restore).
    fn started(&mut self, _io: &mut QueueIo<'_>) {}
}
