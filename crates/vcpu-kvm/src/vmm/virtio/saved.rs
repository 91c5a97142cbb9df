//! What a snapshot keeps of a virtio device: which device it is (its image file, its
//! socket path, its tap, …: opened again on restore), what the driver set up in the
//! transport, and each queue's rings and positions. Connections and buffered bytes are
//! not kept: a restored vsock device tells the guest its transport was reset, as
//! Firecracker's does.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use std::sync::Arc;

use super::{Block, Console, ConsoleInput, Net, Rng, VirtioDevice, Vsock};
use crate::error::{Error, Result};

/// Which device, and what it needs to be opened again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SavedDevice {
    /// A virtio-blk disk.
    Block {
        /// The image file.
        path: PathBuf,
        /// Whether the guest may only read it.
        read_only: bool,
    },
    /// virtio-rng.
    Rng,
    /// virtio-console: the machine's console.
    Console,
    /// virtio-vsock.
    Vsock {
        /// The guest's context id.
        cid: u64,
        /// The host side's UNIX socket.
        uds: PathBuf,
    },
    /// virtio-net.
    Net {
        /// The tap interface.
        tap: String,
        /// The guest's MAC address.
        mac: [u8; 6],
    },
}

/// One queue as the driver set it up, and where the device was in it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedQueue {
    size: u16,
    ready: bool,
    desc: u64,
    avail: u64,
    used: u64,
    next_avail: u16,
    next_used: u16,
}

impl SavedQueue {
    /// `q` as it is now.
    pub fn of(q: &Queue) -> Self {
        SavedQueue {
            size: q.size(),
            ready: q.ready(),
            desc: q.desc_table(),
            avail: q.avail_ring(),
            used: q.used_ring(),
            next_avail: q.next_avail(),
            next_used: q.next_used(),
        }
    }

    /// Puts this state into `q` (a new queue of the same device); `EINVAL` for a state
    /// its checks refuse.
    pub fn apply(&self, q: &mut Queue) -> Result<()> {
        let bad = |e: virtio_queue::Error| {
            Error::invalid("restoreLinux", format!("a saved virtio queue is not valid: {e:?}"))
        };
        q.try_set_size(self.size).map_err(bad)?;
        q.try_set_desc_table_address(GuestAddress(self.desc)).map_err(bad)?;
        q.try_set_avail_ring_address(GuestAddress(self.avail)).map_err(bad)?;
        q.try_set_used_ring_address(GuestAddress(self.used)).map_err(bad)?;
        q.set_next_avail(self.next_avail);
        q.set_next_used(self.next_used);
        q.set_ready(self.ready);
        Ok(())
    }
}

/// One transport: where it is, what the driver negotiated, its queues, its device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedTransport {
    /// Its guest address and interrupt line.
    pub base: u64,
    pub(super) irq: u32,
    pub(super) status: u32,
    pub(super) driver_features: u64,
    pub(super) device_features_sel: u32,
    pub(super) driver_features_sel: u32,
    pub(super) queue_sel: u32,
    pub(super) config_generation: u32,
    pub(super) interrupt_status: u32,
    pub(super) queues: Vec<SavedQueue>,
    /// The device.
    pub device: SavedDevice,
}

/// A device opened again, and a console's input if it is one.
pub type Reopened = (Box<dyn VirtioDevice>, Option<Arc<ConsoleInput>>);

impl SavedDevice {
    /// The device, opened again; `console` is where a console writes, and a console's
    /// input comes back too.
    pub fn open(&self, console: Box<dyn std::io::Write + Send>) -> Result<Reopened> {
        Ok(match self {
            SavedDevice::Block { path, read_only } => (Box::new(Block::open(path, *read_only)?), None),
            SavedDevice::Rng => (Box::new(Rng::default()), None),
            SavedDevice::Console => {
                let c = Console::new(console)?;
                let input = c.input();
                (Box::new(c), Some(input))
            }
            SavedDevice::Vsock { cid, uds } => (Box::new(Vsock::restored(*cid, uds)?), None),
            SavedDevice::Net { tap, mac } => (Box::new(Net::open(tap, *mac)?), None),
        })
    }
}
