//! virtio devices written in JavaScript (`vm.addVirtioDevice`): the transport and the
//! queues are `vcpu_kvm`'s; when the driver notifies a queue, the device thread takes
//! every available chain, checks each buffer lies in guest RAM, and asks JS once (one
//! crossing per notification, not per buffer). JS reads the chains as flat numbers
//! (`takeChains`), views the buffers in place in guest RAM, and hands back what it wrote
//! (`complete`); a chain it did not hand back is returned with 0 bytes.

use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::vmm::virtio::{mmio_slot, Descriptor, MmioTransport, QueueIo, VirtioDevice};
use vcpu_kvm::{IoOperation, IoParams};
use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::error::{invalid, IntoNapi, Result};
use crate::js_callback::JsCallback;
use crate::linux::NativeDevices;
use crate::vm::NativeVm;

/// What the device thread and JS exchange during one notification.
#[derive(Default)]
struct Exchange {
    /// Per chain: head, readable count, writable count, then (address, length) pairs.
    chains: Vec<f64>,
    /// What JS handed back: (head, bytes written).
    results: Vec<(u16, u32)>,
    interrupt: bool,
}

type Shared = Arc<Mutex<Exchange>>;

fn lock(s: &Shared) -> MutexGuard<'_, Exchange> {
    // Each update is a few assignments: a poisoned lock is still consistent.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The device side: calls JS on each notification.
struct JsDevice {
    device_type: u32,
    features: u64,
    queues: Vec<u16>,
    config: Vec<u8>,
    callback: JsCallback,
    shared: Shared,
}

impl VirtioDevice for JsDevice {
    fn device_type(&self) -> u32 {
        self.device_type
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    fn notified(&mut self, queue: usize, io: &mut QueueIo<'_>) {
        let mem = io.mem();
        let mut flat = Vec::new();
        // Each chain's writable buffers, to count JS's writes for snapshots and resets.
        let mut taken: Vec<(u16, Vec<(u64, u32)>)> = Vec::new();
        while let Some(chain) = io.pop(queue) {
            let head = chain.head_index();
            let descs: Vec<_> = chain.collect();
            if descs.iter().any(|d| mem.get_slice(d.addr(), d.len() as usize).is_err()) {
                io.complain(&format!(
                    "dropped a chain on queue {queue}: a buffer outside guest memory"
                ));
                io.add_used(queue, head, 0);
                continue;
            }
            let (writable, readable): (Vec<&Descriptor>, Vec<&Descriptor>) =
                descs.iter().partition(|d| d.is_write_only());
            flat.extend([head as f64, readable.len() as f64, writable.len() as f64]);
            for d in readable.iter().chain(writable.iter()) {
                flat.extend([d.addr().0 as f64, d.len() as f64]);
            }
            taken.push((head, writable.iter().map(|d| (d.addr().0, d.len())).collect()));
        }
        if taken.is_empty() {
            return;
        }
        {
            let mut ex = lock(&self.shared);
            ex.chains = flat;
            ex.results.clear();
            ex.interrupt = false;
        }
        // JS works on the chains meanwhile; a JS thread that is gone answers at once.
        self.callback.ask(queue as u32);
        let ex = std::mem::take(&mut *lock(&self.shared));
        for (head, writable) in taken {
            let written = ex.results.iter().find(|(h, _)| *h == head).map_or(0, |(_, n)| *n);
            let mut left = written as u64;
            for (addr, len) in writable {
                let n = left.min(len as u64);
                if n > 0 {
                    if let Ok(slice) = mem.get_slice(GuestAddress(addr), n as usize) {
                        slice.bitmap().mark_dirty(0, n as usize);
                    }
                }
                left -= n;
            }
            io.add_used(queue, head, written);
        }
        if ex.interrupt {
            io.interrupt();
        }
    }
}

/// A virtio device written in JS, on the MMIO bus.
#[napi]
pub struct NativeVirtioDevice {
    transport: Option<Arc<MmioTransport>>,
    shared: Shared,
    address: f64,
    irq: u32,
    cmdline: String,
}

#[napi]
impl NativeVirtioDevice {
    #[napi(getter)]
    pub fn address(&self) -> f64 {
        self.address
    }

    #[napi(getter)]
    pub fn irq(&self) -> u32 {
        self.irq
    }

    #[napi(getter)]
    pub fn cmdline(&self) -> String {
        self.cmdline.clone()
    }

    /// The chains of the notification in progress (see the module's doc).
    #[napi]
    pub fn take_chains(&self) -> Float64Array {
        Float64Array::new(std::mem::take(&mut lock(&self.shared).chains))
    }

    /// What JS wrote: (head, bytes) pairs, and whether to interrupt regardless.
    #[napi]
    pub fn complete(&self, results: Uint32Array, interrupt: bool) {
        let mut ex = lock(&self.shared);
        ex.results = results.chunks_exact(2).map(|r| (r[0] as u16, r[1])).collect();
        ex.interrupt = interrupt;
    }

    /// An MMIO read of the device's registers (for a VM whose vcpus JS runs), into
    /// `data`; false if the address is not the device's.
    #[napi]
    pub fn mmio_read(&self, address: f64, mut data: Uint8Array) -> bool {
        // SAFETY: a view of the caller's typed array, used within this call on its thread.
        let bytes = unsafe { data.as_mut() };
        self.transport.as_ref().is_some_and(|t| {
            t.handle(IoParams {
                address: address as u64,
                operation: IoOperation::Read(bytes),
            })
        })
    }

    /// An MMIO write of the device's registers; false if not the device's address.
    #[napi]
    pub fn mmio_write(&self, address: f64, data: Uint8Array) -> bool {
        self.transport.as_ref().is_some_and(|t| {
            t.handle(IoParams {
                address: address as u64,
                operation: IoOperation::Write(&data),
            })
        })
    }

    /// Stops the device (its thread ends once no bus holds it).
    #[napi]
    pub fn close(&mut self) {
        self.transport = None;
    }
}

#[napi]
impl NativeVm {
    /// A virtio device whose queues JS serves: `callback(err, queue)` on each
    /// notification. On a Linux machine's bus with `devices`, else the VM's next slot
    /// (JS routes its MMIO exits).
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn add_virtio_device(
        &self,
        env: Env,
        device_type: u32,
        features: BigInt,
        config: Uint8Array,
        queues: Vec<u32>,
        #[napi(ts_arg_type = "(err: Error | null, queue: number) => boolean")] callback: JsCallback,
        index: u32,
        devices: Option<&NativeDevices>,
    ) -> Result<NativeVirtioDevice> {
        const OP: &str = "addVirtioDevice";
        let (_, features, lossless) = features.get_u64();
        if !lossless {
            return Err(invalid(OP, format!("{OP}: features must fit in 64 bits")));
        }
        if queues.is_empty() || queues.len() > 64 {
            return Err(invalid(OP, format!("{OP}: a device has 1 to 64 queues")));
        }
        let queues = queues
            .iter()
            .map(|&q| {
                u16::try_from(q)
                    .ok()
                    .filter(|q| q.is_power_of_two() && *q <= 32768)
                    .ok_or_else(|| invalid(OP, format!("{OP}: a queue size is a power of two up to 32768, not {q}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if config.len() > 0xf00 {
            return Err(invalid(
                OP,
                format!("{OP}: the configuration space holds at most 3840 bytes"),
            ));
        }
        let shared = Shared::default();
        callback.unref(&env);
        let device = JsDevice {
            device_type,
            features,
            queues,
            config: config.to_vec(),
            callback,
            shared: shared.clone(),
        };
        let index = devices.map_or(index as usize, |d| d.devices.virtio_count());
        let (address, irq) = mmio_slot(&self.vm, index).js()?;
        let transport = Arc::new(MmioTransport::new(&self.vm, address, irq, Box::new(device)).js()?);
        if let Some(d) = devices {
            d.devices.attach(transport.clone());
        }
        Ok(NativeVirtioDevice {
            cmdline: transport.cmdline(),
            transport: Some(transport),
            shared,
            address: address as f64,
            irq,
        })
    }
}
