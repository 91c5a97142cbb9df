//! The virtio-mmio transport (virtio 1.2 §4.2, version 2): the device's registers,
//! answered on the vcpu's thread at an MMIO exit, and its queues, served on a thread of
//! the device's own (`worker`). Once the driver sets DRIVER_OK, each queue's notification is a
//! `KVM_IOEVENTFD` (the guest's write completes in the kernel and wakes the device
//! thread) and the device interrupts through a `KVM_IRQFD`: a request costs no exit to
//! userspace but the interrupt's.
//!
//! A driver that breaks the rules (a queue size that is not a power of two, rings
//! outside guest memory, an available index ahead of the ring) gets DEVICE_NEEDS_RESET
//! and a configuration interrupt; a bad request is dropped (used with length 0). Either
//! is logged once per device. virtio-queue bounds every chain (loops, chains longer
//! than the queue, more than 4 GiB) and vm-memory every access.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::device::VirtioDevice;
use super::guest_ram::{guest_ram, GuestRam};
use super::saved::{SavedQueue, SavedTransport};
use super::worker::{lock, needs_reset, serve, spawn_worker, stop, Complaint, Interrupt, State, Worker};
use crate::error::{Error, Result};
use crate::io::{IoOperation, IoParams};
use crate::kvm::{IoEventSpec, KvmVm};

/// The size of one device's register window.
pub const MMIO_SIZE: u64 = 0x1000;
const MAGIC: u32 = 0x7472_6976; // "virt"
const VENDOR: u32 = 0x7570_6376; // "vcpu"

/// One virtio device on the MMIO bus.
pub struct MmioTransport {
    base: u64,
    irq: u32,
    vm: KvmVm,
    state: Arc<Mutex<State>>,
    interrupt: Arc<Interrupt>,
    complaint: Arc<Complaint>,
    worker: Mutex<Option<Worker>>,
    /// Guest RAM as the device saw it at DRIVER_OK, for notifications served here.
    mem: Mutex<Option<GuestRam>>,
}

impl MmioTransport {
    /// `device` at guest address `base` (a [`MMIO_SIZE`] window with no RAM behind it),
    /// interrupting on GSI `irq` of `vm`'s in-kernel irqchip.
    pub fn new(vm: &KvmVm, base: u64, irq: u32, device: Box<dyn VirtioDevice>) -> Result<Self> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).map_err(|e| Error::invalid("virtio", format!("queue size {max}: {e:?}"))))
            .collect::<Result<Vec<_>>>()?;
        let name = format!("virtio device {} at {base:#x}", device.device_type());
        Ok(MmioTransport {
            base,
            irq,
            vm: vm.clone(),
            interrupt: Arc::new(Interrupt {
                status: AtomicU32::new(0),
                irq: vm.register_irq_event(irq)?,
            }),
            state: Arc::new(Mutex::new(State {
                device,
                queues,
                status: 0,
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                config_generation: 0,
            })),
            complaint: Arc::new(Complaint {
                name,
                done: AtomicBool::new(false),
            }),
            worker: Mutex::new(None),
            mem: Mutex::new(None),
        })
    }

    /// Its guest address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Its interrupt line.
    pub fn irq(&self) -> u32 {
        self.irq
    }

    /// The kernel command line entry that announces it: `virtio_mmio.device=4K@ADDR:IRQ`.
    pub fn cmdline(&self) -> String {
        format!("virtio_mmio.device=4K@{:#x}:{}", self.base, self.irq)
    }

    /// The transport and its device as a snapshot keeps them; `ENOTSUP` for a device
    /// that cannot be saved (one written in JS).
    pub fn save(&self) -> Result<SavedTransport> {
        let s = lock(&self.state);
        let device = s.device.saved().ok_or_else(|| {
            Error::new(
                crate::ErrorCode::Errno(libc::ENOTSUP),
                "snapshot",
                "snapshot: a virtio device written in JS cannot be saved",
            )
        })?;
        Ok(SavedTransport {
            base: self.base,
            irq: self.irq,
            status: s.status,
            driver_features: s.driver_features,
            device_features_sel: s.device_features_sel,
            driver_features_sel: s.driver_features_sel,
            queue_sel: s.queue_sel,
            config_generation: s.config_generation,
            interrupt_status: self.interrupt.status.load(Ordering::SeqCst),
            queues: s.queues.iter().map(SavedQueue::of).collect(),
            device,
        })
    }

    /// A transport as `saved` describes it, around `device` (opened again from
    /// `saved.device`): live again at once if the driver had set DRIVER_OK.
    pub fn restore(vm: &KvmVm, saved: &SavedTransport, device: Box<dyn VirtioDevice>) -> Result<Self> {
        const OP: &str = "restoreLinux";
        let t = Self::new(vm, saved.base, saved.irq, device)?;
        {
            let mut s = lock(&t.state);
            if s.queues.len() != saved.queues.len() {
                return Err(Error::invalid(
                    OP,
                    "restoreLinux: a saved virtio device has another number of queues",
                ));
            }
            for (q, sq) in s.queues.iter_mut().zip(&saved.queues) {
                sq.apply(q)?;
            }
            s.status = saved.status;
            s.driver_features = saved.driver_features;
            s.device_features_sel = saved.device_features_sel;
            s.driver_features_sel = saved.driver_features_sel;
            s.queue_sel = saved.queue_sel;
            s.config_generation = saved.config_generation;
        }
        t.interrupt.status.store(saved.interrupt_status, Ordering::SeqCst);
        if saved.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 && saved.status & VIRTIO_CONFIG_S_NEEDS_RESET == 0 {
            t.activate()
                .map_err(|why| Error::invalid(OP, format!("restoreLinux: a virtio device: {why}")))?;
        }
        Ok(t)
    }

    /// The device status the driver set.
    pub fn status(&self) -> u32 {
        lock(&self.state).status
    }

    /// Handles an MMIO access if it falls in this device's window; false otherwise.
    pub fn handle(&self, p: IoParams) -> bool {
        let Some(offset) = p.address.checked_sub(self.base).filter(|o| *o < MMIO_SIZE) else {
            return false;
        };
        match p.operation {
            IoOperation::Read(data) => self.read(offset, data),
            IoOperation::Write(data) => self.write(offset, data),
        }
        true
    }

    fn read(&self, offset: u64, data: &mut [u8]) {
        let s = lock(&self.state);
        if offset >= VIRTIO_MMIO_CONFIG as u64 {
            // Past the end of the configuration space reads as zero.
            let config = s.device.config();
            let at = (offset - VIRTIO_MMIO_CONFIG as u64) as usize;
            for (i, b) in data.iter_mut().enumerate() {
                *b = at.checked_add(i).and_then(|j| config.get(j)).copied().unwrap_or(0);
            }
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            self.complaint
                .once(&format!("a {}-byte register read at {offset:#x}", data.len()));
            return;
        }
        let queue = s.queues.get(s.queue_sel as usize);
        let offered = s.device.features() | (1 << VIRTIO_F_VERSION_1);
        let value = match offset as u32 {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => 2,
            VIRTIO_MMIO_DEVICE_ID => s.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match s.device_features_sel {
                0 => offered as u32,
                1 => (offered >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| q.max_size() as u32),
            VIRTIO_MMIO_QUEUE_READY => queue.map_or(0, |q| q.ready() as u32),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst),
            VIRTIO_MMIO_STATUS => s.status,
            VIRTIO_MMIO_CONFIG_GENERATION => s.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if offset >= VIRTIO_MMIO_CONFIG as u64 {
            // No device here has a writable configuration: the write is dropped.
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.complaint
                .once(&format!("a {}-byte register write at {offset:#x}", data.len()));
            return;
        };
        if !offset.is_multiple_of(4) {
            self.complaint
                .once(&format!("an unaligned register write at {offset:#x}"));
            return;
        }
        let value = u32::from_le_bytes(bytes);
        let mut s = lock(&self.state);
        let live = s.status & VIRTIO_CONFIG_S_DRIVER_OK != 0;
        let sel = s.queue_sel as usize;
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => s.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => s.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES if s.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 => match s.driver_features_sel {
                0 => s.driver_features = (s.driver_features & !0xffff_ffff) | value as u64,
                1 => s.driver_features = (s.driver_features & 0xffff_ffff) | ((value as u64) << 32),
                _ => {}
            },
            VIRTIO_MMIO_QUEUE_SEL => s.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM
            | VIRTIO_MMIO_QUEUE_READY
            | VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH => {
                let Some(q) = s.queues.get_mut(sel) else {
                    self.complaint
                        .once(&format!("a write to queue {sel}, which does not exist"));
                    return;
                };
                if live || (q.ready() && offset as u32 != VIRTIO_MMIO_QUEUE_READY) {
                    self.complaint.once("a queue changed while in use");
                    return;
                }
                if let Err(why) = set_queue(q, offset as u32, value) {
                    drop(s);
                    self.needs_reset(&why);
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => {
                if live {
                    // A notification that missed the ioeventfd (another width): serve it.
                    drop(s);
                    self.serve_now(value as usize);
                } else {
                    self.complaint.once("a queue notified before DRIVER_OK");
                }
            }
            VIRTIO_MMIO_INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!value, Ordering::SeqCst);
            }
            VIRTIO_MMIO_STATUS => {
                drop(s);
                self.set_status(value);
            }
            _ => {}
        }
    }

    /// The driver writes the status: 0 resets the device, FEATURES_OK is refused for
    /// features the device does not offer, DRIVER_OK makes the device live.
    fn set_status(&self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut s = lock(&self.state);
        let old = s.status;
        let mut new = value | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
        if new & VIRTIO_CONFIG_S_FEATURES_OK != 0 && old & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            let offered = s.device.features() | (1 << VIRTIO_F_VERSION_1);
            if s.driver_features & !offered != 0 || s.driver_features & (1 << VIRTIO_F_VERSION_1) == 0 {
                new &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        if new & VIRTIO_CONFIG_S_DRIVER_OK != 0 && old & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            if new & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
                drop(s);
                return self.needs_reset("DRIVER_OK without FEATURES_OK");
            }
            s.status = new;
            drop(s);
            if let Err(why) = self.activate() {
                self.needs_reset(&why);
            }
            return;
        }
        s.status = new;
    }

    /// Checks the ready queues against guest memory, routes their notifications into the
    /// kernel and starts the device thread.
    fn activate(&self) -> std::result::Result<(), String> {
        const OP: &str = "virtio";
        let mem = guest_ram(&self.vm, OP).map_err(|e| e.message().to_string())?;
        let mut events = Vec::new();
        {
            let s = lock(&self.state);
            for (i, q) in s.queues.iter().enumerate() {
                if !q.ready() {
                    continue;
                }
                if !q.is_valid(&mem) {
                    return Err(format!("queue {i}'s rings are not inside guest memory"));
                }
                let event = self
                    .vm
                    .register_ioevent(IoEventSpec {
                        address: self.base + VIRTIO_MMIO_QUEUE_NOTIFY as u64,
                        length: 4,
                        datamatch: Some(i as u64),
                        port: false,
                    })
                    .map_err(|e| e.message().to_string())?;
                events.push((i, event));
            }
        }
        *lock(&self.mem) = Some(mem.clone());
        let worker = spawn_worker(
            self.state.clone(),
            self.interrupt.clone(),
            self.complaint.clone(),
            mem,
            events,
        )
        .map_err(|e| e.message().to_string())?;
        if let Some(old) = lock(&self.worker).replace(worker) {
            stop(old);
        }
        Ok(())
    }

    /// Serves queue `index` on this thread (a notification the ioeventfd did not take).
    fn serve_now(&self, index: usize) {
        let mem = lock(&self.mem).clone();
        if let Some(mem) = mem {
            serve(&self.state, &self.interrupt, &self.complaint, &mem, index);
        }
    }

    /// Stops the device thread, then returns the device and its queues to their reset state.
    fn reset(&self) {
        if let Some(w) = lock(&self.worker).take() {
            stop(w);
        }
        *lock(&self.mem) = None;
        let mut s = lock(&self.state);
        for q in &mut s.queues {
            q.reset();
        }
        s.device.reset();
        s.status = 0;
        s.driver_features = 0;
        s.device_features_sel = 0;
        s.driver_features_sel = 0;
        s.queue_sel = 0;
        self.interrupt.status.store(0, Ordering::SeqCst);
    }

    fn needs_reset(&self, why: &str) {
        needs_reset(&self.state, &self.interrupt, &self.complaint, why);
    }
}

impl Drop for MmioTransport {
    fn drop(&mut self) {
        if let Some(w) = lock(&self.worker).take() {
            stop(w);
        }
    }
}

/// A queue register write, before the queue is ready.
fn set_queue(q: &mut Queue, register: u32, value: u32) -> std::result::Result<(), String> {
    let low = |old: u64| (old & !0xffff_ffff) | value as u64;
    let high = |old: u64| (old & 0xffff_ffff) | ((value as u64) << 32);
    let result = match register {
        VIRTIO_MMIO_QUEUE_NUM => u16::try_from(value)
            .map_err(|_| virtio_queue::Error::InvalidSize)
            .and_then(|n| q.try_set_size(n)),
        VIRTIO_MMIO_QUEUE_READY => {
            q.set_ready(value == 1);
            Ok(())
        }
        VIRTIO_MMIO_QUEUE_DESC_LOW => q.try_set_desc_table_address(GuestAddress(low(q.desc_table()))),
        VIRTIO_MMIO_QUEUE_DESC_HIGH => q.try_set_desc_table_address(GuestAddress(high(q.desc_table()))),
        VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.try_set_avail_ring_address(GuestAddress(low(q.avail_ring()))),
        VIRTIO_MMIO_QUEUE_AVAIL_HIGH => q.try_set_avail_ring_address(GuestAddress(high(q.avail_ring()))),
        VIRTIO_MMIO_QUEUE_USED_LOW => q.try_set_used_ring_address(GuestAddress(low(q.used_ring()))),
        VIRTIO_MMIO_QUEUE_USED_HIGH => q.try_set_used_ring_address(GuestAddress(high(q.used_ring()))),
        _ => Ok(()),
    };
    result.map_err(|e| format!("the driver set up a queue wrongly ({e:?}, value {value:#x})"))
}
