//! A GDB remote stub for a whole VM, built on `gdbstub`, on a thread of its own: it
//! works whatever loop runs the vcpus (`run()`, `runUntil`, `runAsync`, the Linux device
//! loop), on any thread, because the hold it uses is the VM's run hook, which the
//! vcpus' own `run()` calls (see `hold`). One debugger at a time; after it detaches, another may connect.

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod hold;
mod target;
#[cfg(target_arch = "x86_64")]
mod x86_64;

// The architecture's registers, debug registers and debug exits.
#[cfg(target_arch = "aarch64")]
use aarch64 as arch;
#[cfg(target_arch = "x86_64")]
use x86_64 as arch;

use std::io::ErrorKind;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};

use self::hold::DebugHold;
use self::target::VmTarget;
use crate::error::{Error, ErrorCode, Result};
use crate::kvm::KvmVm;
use crate::Vcpu;

/// How long the stub waits for every vcpu to leave the guest after stopping it.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// How often the idle server and a running session look around.
const POLL: Duration = Duration::from_millis(10);

/// A listening GDB stub. Dropping it closes it.
pub struct GdbServer {
    port: u16,
    closing: Arc<AtomicBool>,
    /// The debugger's connection, to end it on close.
    session: Arc<Mutex<Option<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl GdbServer {
    /// Serves the GDB remote protocol for `vm` on `host:port` (port 0 picks one).
    /// `wait`: every vcpu is held before its first instruction until gdb continues (as
    /// QEMU's `-s -S`).
    pub fn start(vm: &KvmVm, host: &str, port: u16, wait: bool) -> Result<GdbServer> {
        const OP: &str = "gdbServer";
        let listener = TcpListener::bind((host, port)).map_err(|e| {
            let code = ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EINVAL));
            Error::new(code, OP, format!("{OP}: cannot listen on {host}:{port}: {e}"))
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::errno(OP, e.raw_os_error().unwrap_or(libc::EIO)))?;
        let hold = Arc::new(DebugHold::default());
        if wait {
            hold.attach(vm);
        }
        let closing = Arc::new(AtomicBool::new(false));
        let session = Arc::new(Mutex::new(None));
        let thread = {
            let (vm, closing, session) = (vm.clone(), closing.clone(), session.clone());
            let hold = hold.clone();
            std::thread::Builder::new()
                .name("vcpu-gdb".into())
                .spawn(move || serve(&vm, &hold, &listener, &closing, &session))
                .map_err(|e| Error::invalid(OP, format!("{OP}: cannot start its thread: {e}")))?
        };
        Ok(GdbServer {
            port,
            closing,
            session,
            thread: Some(thread),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening and ends a session in progress (as a detach: the guest runs on).
    /// Idempotent.
    pub fn close(&mut self) {
        self.closing.store(true, Ordering::Release);
        if let Some(stream) = lock(&self.session).as_ref() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for GdbServer {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn serve(
    vm: &KvmVm,
    hold: &Arc<DebugHold>,
    listener: &TcpListener,
    closing: &AtomicBool,
    session: &Mutex<Option<TcpStream>>,
) {
    while !closing.load(Ordering::Acquire) && !vm.is_closed() {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => break,
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        *lock(session) = stream.try_clone().ok();
        debug_session(vm, hold, stream);
        *lock(session) = None;
    }
    // Held from `start` with `wait` while no debugger came.
    hold.detach(vm);
}

/// One debugger, from connection to detach (or kill, which closes the VM).
fn debug_session(vm: &KvmVm, hold: &Arc<DebugHold>, stream: TcpStream) {
    hold.attach(vm);
    wait_stopped(vm);
    let mut target = VmTarget::new(vm.clone(), hold.clone());
    let result = GdbStub::new(stream).run_blocking::<EventLoop>(&mut target);
    hold.detach(vm);
    if let Ok(DisconnectReason::Kill) = result {
        vm.close();
    }
}

/// Waits until no vcpu is inside the guest (bounded: a vcpu thread that never comes
/// back cannot hang the debugger).
fn wait_stopped(vm: &KvmVm) {
    let deadline = Instant::now() + STOP_WAIT;
    while !DebugHold::all_stopped(vm) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// The thread id gdb knows vcpu `id` by.
pub(super) fn tid(id: usize) -> gdbstub::common::Tid {
    std::num::NonZeroUsize::new(id + 1).unwrap_or(std::num::NonZeroUsize::MIN)
}

enum EventLoop {}

impl BlockingEventLoop for EventLoop {
    type Target = VmTarget;
    type Connection = TcpStream;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut VmTarget,
        conn: &mut TcpStream,
    ) -> std::result::Result<Event<Self::StopReason>, WaitForStopReasonError<&'static str, std::io::Error>> {
        loop {
            if target.vm.is_closed() {
                return Ok(Event::TargetStopped(MultiThreadStopReason::Exited(0)));
            }
            if let Some((id, exit)) = target.hold.next_stop(POLL) {
                wait_stopped(&target.vm);
                match target.stop_for(id, exit) {
                    Some(reason) => return Ok(Event::TargetStopped(reason)),
                    None => target.resume_again(), // a step of the stub's own
                }
            }
            if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                let byte = ConnectionExt::read(conn).map_err(WaitForStopReasonError::Connection)?;
                return Ok(Event::IncomingData(byte));
            }
        }
    }

    fn on_interrupt(target: &mut VmTarget) -> std::result::Result<Option<Self::StopReason>, &'static str> {
        target.hold.halt(&target.vm);
        wait_stopped(&target.vm);
        let first = target.vm.vcpus().first().map(|v| v.id()).unwrap_or(0);
        Ok(Some(MultiThreadStopReason::SignalWithThread {
            tid: tid(first),
            signal: Signal::SIGINT,
        }))
    }
}
