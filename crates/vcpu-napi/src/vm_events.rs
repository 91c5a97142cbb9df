//! `vm.registerIoevent`, `vm.registerIrqfd` and `vm.setIrqLine`, for JS: each converts
//! and delegates to `vcpu_kvm::kvm::vm_events`. An ioevent's `wait()` is a task on
//! libuv's thread pool that polls the eventfd: no thread of its own per event.

use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::kvm::{IoEvent, IoEventSpec, IrqEvent};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::args::{u64_of, uint};
use crate::error::{closed, IntoNapi, Result};
use crate::vm::NativeVm;

/// How often a pending wait looks whether the process is exiting.
const POLL_MS: i32 = 100;

/// What `registerIoevent` takes.
#[napi(object)]
pub struct IoEventOptions {
    pub address: f64,
    pub length: f64,
    pub datamatch: Option<BigInt>,
    pub port: Option<bool>,
}

#[napi]
pub struct NativeIoEvent {
    event: Arc<IoEvent>,
    /// Signalled by `close()`, so that a pending wait ends.
    closing: Arc<EventFd>,
}

/// A wait for the ioevent's next writes.
pub struct WaitTask {
    event: Arc<IoEvent>,
    closing: Arc<EventFd>,
}

impl Task for WaitTask {
    type Output = u64;
    type JsValue = f64;

    fn compute(&mut self) -> napi::Result<u64> {
        let mut fds = [
            libc::pollfd {
                fd: self.event.event().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.closing.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: two pollfds of our own, for the call only.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_MS) };
            if fds[1].revents != 0 || crate::handles::exiting() {
                return Err(napi::Error::new(napi::Status::GenericFailure, "ECLOSED"));
            }
            if n > 0 && fds[0].revents != 0 {
                if let Ok(count) = self.event.event().read() {
                    return Ok(count);
                }
            }
        }
    }

    fn resolve(&mut self, _env: Env, count: u64) -> napi::Result<f64> {
        Ok(count as f64)
    }
}

#[napi]
impl NativeIoEvent {
    /// Resolves with the number of matching guest writes since the last wait or count,
    /// once there is at least one.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn wait(&self) -> AsyncTask<WaitTask> {
        AsyncTask::new(WaitTask {
            event: self.event.clone(),
            closing: self.closing.clone(),
        })
    }

    /// The number of matching guest writes since the last wait or count (0 if none).
    #[napi]
    pub fn count(&self) -> f64 {
        self.event.event().read().map(|n| n as f64).unwrap_or(0.0)
    }

    /// Stops watching; a pending wait rejects.
    #[napi]
    pub fn close(&self) {
        self.event.close();
        let _ = self.closing.write(1);
    }
}

#[napi]
pub struct NativeIrqEvent {
    event: IrqEvent,
}

#[napi]
impl NativeIrqEvent {
    /// Raises the interrupt line once.
    #[napi]
    pub fn trigger(&self) -> Result<()> {
        self.event.trigger().js()
    }

    /// Unregisters the irqfd.
    #[napi]
    pub fn close(&self) {
        self.event.close();
    }
}

#[napi]
impl NativeVm {
    /// `KVM_IOEVENTFD`: matching guest writes complete in the kernel and are counted.
    #[napi]
    pub fn register_ioevent(&self, options: IoEventOptions) -> Result<NativeIoEvent> {
        const OP: &str = "registerIoevent";
        let spec = IoEventSpec {
            address: uint(OP, "address", options.address, crate::args::MAX_SAFE)?,
            length: uint(OP, "length", options.length, 8.0)? as u32,
            datamatch: options.datamatch.map(|d| u64_of(OP, "datamatch", &d)).transpose()?,
            port: options.port.unwrap_or(false),
        };
        let event = self.vm.register_ioevent(spec).js()?;
        let closing = EventFd::new(EFD_NONBLOCK).map_err(|_| closed(OP, "VM"))?;
        Ok(NativeIoEvent {
            event: Arc::new(event),
            closing: Arc::new(closing),
        })
    }

    /// `KVM_IRQFD` for interrupt line `gsi`.
    #[napi]
    pub fn register_irqfd(&self, gsi: f64) -> Result<NativeIrqEvent> {
        let gsi = uint("registerIrqfd", "gsi", gsi, u32::MAX.into())? as u32;
        Ok(NativeIrqEvent {
            event: self.vm.register_irq_event(gsi).js()?,
        })
    }

    /// `KVM_IRQ_LINE`: sets interrupt line `gsi` high or low.
    #[napi]
    pub fn set_irq_line(&self, gsi: f64, level: bool) -> Result<()> {
        let gsi = uint("setIrqLine", "gsi", gsi, u32::MAX.into())? as u32;
        self.vm.set_irq_line(gsi, level).js()
    }
}
