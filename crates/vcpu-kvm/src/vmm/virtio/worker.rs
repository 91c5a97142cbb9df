//! The device's side of a virtio-mmio transport: its state (what the driver set up, and
//! the device), its interrupt, its complaints, and the thread that serves its queues.
//! The thread waits in epoll on the queues' ioeventfds and the device's host
//! descriptors; each notification takes the state's lock, lets the device work on its
//! queues, then interrupts through the irqfd (or marks the device broken).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_NEEDS_RESET};
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{QueueIo, VirtioDevice};
use super::guest_ram::GuestRam;
use crate::error::{Error, Result};
use crate::kvm::{IoEvent, IrqEvent};

/// The epoll token of the stop event.
const STOP: u64 = u64::MAX;

/// The transport's interrupt: the status register the driver reads and acknowledges,
/// and the irqfd that raises the device's line.
pub(super) struct Interrupt {
    pub(super) status: AtomicU32,
    pub(super) irq: IrqEvent,
}

impl Interrupt {
    pub(super) fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        // A failed trigger (the VM closing) loses an interrupt nobody waits for.
        let _ = self.irq.trigger();
    }
}

/// Logs what a driver got wrong, once per device.
pub(super) struct Complaint {
    pub(super) name: String,
    pub(super) done: AtomicBool,
}

impl Complaint {
    pub(super) fn once(&self, what: &str) {
        if !self.done.swap(true, Ordering::Relaxed) {
            eprintln!(
                "vcpu: {}: {what} (further complaints about this device are not logged)",
                self.name
            );
        }
    }
}

/// What the driver set up, and the device.
pub(super) struct State {
    pub(super) device: Box<dyn VirtioDevice>,
    pub(super) queues: Vec<Queue>,
    pub(super) status: u32,
    pub(super) device_features_sel: u32,
    pub(super) driver_features_sel: u32,
    pub(super) driver_features: u64,
    pub(super) queue_sel: u32,
    pub(super) config_generation: u32,
}

/// The device thread, while the device is live.
pub(super) struct Worker {
    stop: EventFd,
    thread: JoinHandle<()>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state whole: a poisoned lock still guards it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets DEVICE_NEEDS_RESET and tells the driver (a configuration interrupt, once live).
pub(super) fn needs_reset(state: &Mutex<State>, interrupt: &Interrupt, complaint: &Complaint, why: &str) {
    complaint.once(why);
    let mut s = lock(state);
    s.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    if s.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
        interrupt.raise(VIRTIO_MMIO_INT_CONFIG);
    }
}

/// The driver notified queue `index`: the device serves it, then interrupts if it used
/// any buffer.
pub(super) fn serve(state: &Mutex<State>, interrupt: &Interrupt, complaint: &Complaint, mem: &GuestRam, index: usize) {
    let guard = lock(state);
    if guard.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 || guard.status & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
        return;
    }
    let Some(q) = guard.queues.get(index).filter(|q| q.ready()) else {
        drop(guard);
        return complaint.once(&format!("queue {index} notified, which is not set up"));
    };
    // An available index more than a ring ahead is a broken driver, not work to do.
    let ahead = q
        .avail_idx(mem, Ordering::Acquire)
        .map(|avail| avail - std::num::Wrapping(q.next_avail()));
    if ahead.is_err() || ahead.is_ok_and(|n| n.0 > q.size()) {
        drop(guard);
        return needs_reset(
            state,
            interrupt,
            complaint,
            &format!("queue {index}'s available ring is broken"),
        );
    }
    with_queues(guard, state, interrupt, complaint, mem, |device, io| {
        device.notified(index, io)
    });
}

/// Lets the device work on its queues, then interrupts for what it used or marks it
/// broken.
fn with_queues(
    mut guard: MutexGuard<'_, State>,
    state: &Mutex<State>,
    interrupt: &Interrupt,
    complaint: &Complaint,
    mem: &GuestRam,
    work: impl FnOnce(&mut dyn VirtioDevice, &mut QueueIo<'_>),
) {
    let s = &mut *guard;
    let complain = |what: &str| complaint.once(what);
    let mut io = QueueIo::new(&mut s.queues, mem, &complain);
    work(s.device.as_mut(), &mut io);
    let (used, broken) = (io.used, io.broken.take());
    drop(guard);
    if let Some(why) = broken {
        needs_reset(state, interrupt, complaint, &why);
    } else if used {
        interrupt.raise(VIRTIO_MMIO_INT_VRING);
    }
}

/// A device's host-side descriptor is ready.
fn host_event(state: &Mutex<State>, interrupt: &Interrupt, complaint: &Complaint, mem: &GuestRam, token: u64) {
    let guard = lock(state);
    if guard.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 || guard.status & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
        return;
    }
    with_queues(guard, state, interrupt, complaint, mem, |device, io| {
        device.host_event(token, io)
    });
}

/// The epoll tokens: queue notifications are their index, host descriptors above.
const HOST: u64 = 1 << 32;

pub(super) fn spawn_worker(
    state: Arc<Mutex<State>>,
    interrupt: Arc<Interrupt>,
    complaint: Arc<Complaint>,
    mem: GuestRam,
    events: Vec<(usize, IoEvent)>,
) -> Result<Worker> {
    const OP: &str = "virtio";
    let os = |e: std::io::Error| Error::errno(OP, e.raw_os_error().unwrap_or(libc::EIO));
    let epoll = Epoll::new().map_err(os)?;
    let stop = EventFd::new(EFD_NONBLOCK).map_err(os)?;
    epoll
        .ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP),
        )
        .map_err(os)?;
    for (i, e) in &events {
        epoll
            .ctl(
                ControlOperation::Add,
                e.event().as_raw_fd(),
                EpollEvent::new(EventSet::IN, *i as u64),
            )
            .map_err(os)?;
    }
    let thread = std::thread::Builder::new()
        .name("vcpu-virtio".into())
        .spawn(move || {
            // The device's first work with its queues live (a restored vsock's reset event),
            // then each queue served once: a notification the driver made just before a
            // snapshot may not have been served, and a spurious one is harmless.
            with_queues(lock(&state), &state, &interrupt, &complaint, &mem, |device, io| {
                device.started(io)
            });
            for (i, _) in &events {
                serve(&state, &interrupt, &complaint, &mem, *i);
            }
            let mut watched: Vec<(std::os::unix::io::RawFd, u64, bool)> = Vec::new();
            let mut ready = vec![EpollEvent::default(); 32];
            loop {
                // The device's host descriptors, as it wants them watched now.
                let wanted = lock(&state).device.host_events();
                for &(fd, token, _) in watched.iter().filter(|w| !wanted.contains(w)) {
                    let _ = epoll.ctl(
                        ControlOperation::Delete,
                        fd,
                        EpollEvent::new(EventSet::IN, HOST + token),
                    );
                }
                for &(fd, token, out) in wanted.iter().filter(|w| !watched.contains(w)) {
                    let set = if out {
                        EventSet::IN | EventSet::OUT
                    } else {
                        EventSet::IN
                    };
                    let _ = epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(set, HOST + token));
                }
                watched = wanted;
                let n = match epoll.wait(-1, &mut ready) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                for ev in &ready[..n] {
                    match ev.data() {
                        STOP => return,
                        token if token >= HOST => host_event(&state, &interrupt, &complaint, &mem, token - HOST),
                        token => {
                            if let Some((i, e)) = events.iter().find(|(i, _)| *i as u64 == token) {
                                let _ = e.event().read();
                                serve(&state, &interrupt, &complaint, &mem, *i);
                            }
                        }
                    }
                }
            }
        })
        .map_err(os)?;
    Ok(Worker { stop, thread })
}

/// Stops a device thread and waits for it.
pub(super) fn stop(w: Worker) {
    let _ = w.stop.write(1);
    let _ = w.thread.join();
}
