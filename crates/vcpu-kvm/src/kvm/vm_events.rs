//! The crosvm `Vm` device surface: ioeventfds (a guest write completes in the kernel
//! and signals an eventfd, no exit), irqfds (signalling an eventfd raises an interrupt
//! line of the in-kernel irqchip) and irq lines set directly.

use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{
    kvm_ioeventfd, kvm_ioeventfd_flag_nr_datamatch, kvm_ioeventfd_flag_nr_deassign, kvm_ioeventfd_flag_nr_pio,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::vm::{KvmVm, WeakVm};
use crate::error::{Context, Error, ErrorCode, Result};

/// What an ioevent watches: where the guest writes and what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoEventSpec {
    /// A port (with `port`) or a guest physical address.
    pub address: u64,
    /// The access width it matches: 1, 2, 4 or 8, or 0 for any.
    pub length: u32,
    /// Only writes of this value (needs a `length`).
    pub datamatch: Option<u64>,
    /// Port I/O rather than MMIO.
    pub port: bool,
}

/// A registration with a VM that ends once, on `close` or drop (and only does
/// something while the VM is open).
struct Registration {
    vm: WeakVm,
    live: AtomicBool,
}

impl Registration {
    fn new(vm: &KvmVm) -> Self {
        Registration {
            vm: vm.downgrade(),
            live: AtomicBool::new(true),
        }
    }

    fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Ends it: `undo` runs with the VM, the first time only and if the VM is open.
    fn end(&self, undo: impl FnOnce(&KvmVm)) {
        if self.live.swap(false, Ordering::AcqRel) {
            if let Some(vm) = self.vm.upgrade() {
                undo(&vm);
            }
        }
    }
}

/// An ioeventfd: counts the guest's writes that match it, which complete in the kernel.
pub struct IoEvent {
    event: EventFd,
    raw: kvm_ioeventfd,
    registration: Registration,
}

impl IoEvent {
    /// The eventfd the kernel signals (non-blocking): reading it gives the writes since
    /// the last read.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Stops watching (the guest's writes exit to user space again). Idempotent.
    pub fn close(&self) {
        let raw = kvm_ioeventfd {
            flags: self.raw.flags | (1 << kvm_ioeventfd_flag_nr_deassign),
            ..self.raw
        };
        self.registration.end(|vm| {
            let _ = vm.with_fd("ioevent", |fd| super::ioctls::ioeventfd(fd, &raw).op("ioevent"));
        });
    }
}

impl Drop for IoEvent {
    fn drop(&mut self) {
        self.close();
    }
}

/// An irqfd: each signal raises interrupt line `gsi` of the in-kernel irqchip (an edge).
pub struct IrqEvent {
    event: EventFd,
    gsi: u32,
    registration: Registration,
}

impl IrqEvent {
    /// Raises the line once.
    pub fn trigger(&self) -> Result<()> {
        if !self.registration.is_live() {
            return Err(Error::closed("trigger", "IrqEvent"));
        }
        self.event
            .write(1)
            .map_err(|e| Error::errno("trigger", e.raw_os_error().unwrap_or(libc::EIO)))
    }

    /// The eventfd (for a device thread that signals it directly).
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Unregisters the irqfd. Idempotent.
    pub fn close(&self) {
        self.registration.end(|vm| {
            let _ = vm.with_fd("irqEvent", |fd| {
                fd.unregister_irqfd(&self.event, self.gsi).op("irqEvent")
            });
        });
    }
}

impl Drop for IrqEvent {
    fn drop(&mut self) {
        self.close();
    }
}

fn new_event(op: &'static str) -> Result<EventFd> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| Error::errno(op, e.raw_os_error().unwrap_or(libc::EIO)))
}

fn needs_irqchip(op: &'static str, errno: i32) -> Error {
    match errno {
        libc::EINVAL | libc::ENXIO | libc::ENODEV => Error::new(
            ErrorCode::Errno(errno),
            op,
            format!("{op}: needs the in-kernel irqchip (create the VM with the irqchip option)"),
        ),
        errno => Error::errno(op, errno),
    }
}

impl KvmVm {
    /// Registers an ioeventfd (`KVM_IOEVENTFD`): guest writes matching `spec` complete in
    /// the kernel without an exit and are counted on the returned event. `EINVAL` for a
    /// length other than 0, 1, 2, 4 or 8, a datamatch without a length or wider than it,
    /// or a port above 0xffff.
    pub fn register_ioevent(&self, spec: IoEventSpec) -> Result<IoEvent> {
        const OP: &str = "registerIoevent";
        if !matches!(spec.length, 0 | 1 | 2 | 4 | 8) {
            return Err(Error::invalid(
                OP,
                format!("{OP}: length must be 0, 1, 2, 4 or 8, got {}", spec.length),
            ));
        }
        if let Some(value) = spec.datamatch {
            let fits = spec.length == 8 || (spec.length > 0 && value >> (spec.length * 8) == 0);
            if !fits {
                return Err(Error::invalid(
                    OP,
                    format!("{OP}: datamatch {value:#x} needs a length it fits in (1, 2, 4 or 8 bytes)"),
                ));
            }
        }
        if spec.port && spec.address > 0xffff {
            return Err(Error::invalid(
                OP,
                format!("{OP}: port {:#x} is above 0xffff", spec.address),
            ));
        }
        let event = new_event(OP)?;
        let mut flags = 0;
        if spec.datamatch.is_some() {
            flags |= 1 << kvm_ioeventfd_flag_nr_datamatch;
        }
        if spec.port {
            flags |= 1 << kvm_ioeventfd_flag_nr_pio;
        }
        let raw = kvm_ioeventfd {
            datamatch: spec.datamatch.unwrap_or(0),
            addr: spec.address,
            len: spec.length,
            fd: event.as_raw_fd(),
            flags,
            ..Default::default()
        };
        self.with_fd(OP, |fd| {
            super::ioctls::ioeventfd(fd, &raw).map_err(|e| match e.errno() {
                libc::EEXIST => Error::new(
                    ErrorCode::Errno(libc::EEXIST),
                    OP,
                    format!(
                        "{OP}: an ioevent for {:#x} with this length and datamatch exists",
                        spec.address
                    ),
                ),
                errno => Error::errno(OP, errno),
            })
        })?;
        Ok(IoEvent {
            event,
            raw,
            registration: Registration::new(self),
        })
    }

    /// Registers an irqfd (`KVM_IRQFD`) for interrupt line `gsi`: [`IrqEvent::trigger`]
    /// (or a write to its eventfd from any thread) raises the line. Needs the in-kernel
    /// irqchip.
    pub fn register_irq_event(&self, gsi: u32) -> Result<IrqEvent> {
        let event = new_event("registerIrqfd")?;
        self.register_irqfd(&event, gsi)?;
        Ok(IrqEvent {
            event,
            gsi,
            registration: Registration::new(self),
        })
    }

    /// Routes `evt` to interrupt line `gsi` of the in-kernel irqchip (`KVM_IRQFD`), the
    /// caller keeping the event (see [`KvmVm::register_irq_event`] for one kept here).
    pub fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> Result<()> {
        const OP: &str = "registerIrqfd";
        self.finalize_irqchip(OP)?;
        self.with_fd(OP, |fd| {
            fd.register_irqfd(evt, gsi).map_err(|e| needs_irqchip(OP, e.errno()))
        })
    }

    /// Sets interrupt line `gsi` of the in-kernel irqchip high or low (`KVM_IRQ_LINE`).
    pub fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        const OP: &str = "setIrqLine";
        self.finalize_irqchip(OP)?;
        self.with_fd(OP, |fd| {
            fd.set_irq_line(super::arch::irq_line(gsi), level)
                .map_err(|e| needs_irqchip(OP, e.errno()))
        })
    }
}
