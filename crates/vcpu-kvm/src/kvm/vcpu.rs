//! `KvmVcpu`: the `Vcpu` trait over a KVM vcpu fd and our own `kvm_run` mapping.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use kvm_bindings::*;
use kvm_ioctls::VcpuFd;

use super::run::RunShared;
use super::signal::{install_kick_handler, register, shutting_down, unregister, VcpuSignalHandle};
use super::vm::KvmVm;
use super::{ioctls, x86_64};
use crate::error::{Context, Error, Result};
use crate::{HypercallAbi, IoOperation, IoParams, Vcpu, VcpuExit};

/// Which exit `handle_*` may still complete. Cleared by the next `run()` or handler.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Pending {
    None = 0,
    Io = 1,
    Mmio = 2,
    PortHypercall = 3,
    KvmHypercall = 4,
}

impl Pending {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Pending::Io,
            2 => Pending::Mmio,
            3 => Pending::PortHypercall,
            4 => Pending::KvmHypercall,
            _ => Pending::None,
        }
    }
}

thread_local! {
    // The kernel thread id, asked once per thread: `run()` publishes it for kicks.
    static TID: i32 = {
        // SAFETY: gettid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as i32 }
    };
}

/// A KVM vcpu. `Send + Sync`; `run()` and the `handle_*` methods belong on one thread
/// at a time (a second concurrent `run()` is refused with `EBUSY`).
pub struct KvmVcpu {
    id: usize,
    pub(crate) fd: VcpuFd,
    shared: Arc<RunShared>,
    pub(crate) vm: KvmVm,
    pending: AtomicU8,
    running: AtomicBool,
    requested: AtomicBool,
}

impl KvmVcpu {
    pub(crate) fn new(id: usize, fd: VcpuFd, vm: KvmVm) -> Result<Self> {
        install_kick_handler()?;
        let shared = Arc::new(RunShared::map(&fd, vm.shared().run_size)?);
        register(&shared);
        let vcpu = KvmVcpu {
            id,
            fd,
            shared,
            vm,
            pending: AtomicU8::new(Pending::None as u8),
            running: AtomicBool::new(false),
            requested: AtomicBool::new(false),
        };
        x86_64::init_vcpu(&vcpu)?;
        Ok(vcpu)
    }

    pub(crate) fn run_shared(&self) -> &Arc<RunShared> {
        &self.shared
    }

    /// After `run()` returned `EINTR`: whether an exit was asked for (immediate exit, a
    /// kick, process shutdown), as opposed to a stray signal or the liveness tick, after
    /// which a caller may simply run again.
    pub fn interrupted_by_request(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Opts in to (or out of) the liveness tick: a run that stays inside the guest for
    /// longer than [`TICK`](super::TICK) is interrupted (`EINTR`, not
    /// [`Self::interrupted_by_request`]) so its caller can check that its thread is
    /// still wanted (a JS worker being terminated) and otherwise run again. Off by
    /// default.
    pub fn set_liveness_tick(&self, on: bool) {
        self.shared.tick.store(on, Ordering::Release);
    }

    /// The VM this vcpu belongs to.
    pub fn vm(&self) -> &KvmVm {
        &self.vm
    }

    /// True once closed (by [`KvmVcpu::close`] or by closing its VM).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Marks the vcpu closed, kicking a run in progress: later calls fail with `ECLOSED`,
    /// handles do nothing. The fd itself is released when the `KvmVcpu` is dropped.
    /// Idempotent.
    pub fn close(&self) {
        // Kick first: a run in progress on another thread returns at once.
        self.signal_handle().kick();
        self.shared.closed.store(true, Ordering::Release);
    }

    /// The vcpu fd, or `ECLOSED`.
    pub(crate) fn fd(&self, op: &'static str) -> Result<&VcpuFd> {
        if self.is_closed() {
            return Err(Error::closed(op, "vcpu"));
        }
        Ok(&self.fd)
    }

    /// The `kvm_run` structure. Only the vcpu's own thread reads or writes its union.
    // kvm_run is kernel-shared memory outside Rust's ownership, used by one thread at a
    // time (the vcpu's); callers hold one such borrow at a time.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn kvm_run(&self) -> &mut kvm_run {
        // SAFETY: the mapping is live for `self`'s lifetime; the union is only accessed
        // from the thread that runs the vcpu, between runs (the kernel writes it only
        // inside KVM_RUN, which that same thread is not in).
        unsafe { &mut *self.shared.run() }
    }

    /// The whole `kvm_run` mapping (the struct and the PIO data page after it), for
    /// zero-copy views of exit data: `(start, length)`.
    pub fn run_mapping(&self) -> (Arc<RunShared>, usize) {
        (self.shared.clone(), self.shared.len())
    }

    /// `KVM_INTERRUPT`: queues external interrupt `vector` (no in-kernel irqchip).
    pub fn interrupt(&self, vector: u32) -> Result<()> {
        ioctls::interrupt(self.fd("interrupt")?, vector).op("interrupt")
    }

    /// `KVM_NMI`: queues a non-maskable interrupt.
    pub fn nmi(&self) -> Result<()> {
        self.fd("nmi")?.nmi().op("nmi")
    }

    /// Takes the pending exit, which must be one of `want` (`EINVAL` otherwise).
    fn take_pending(&self, want: &[Pending], op: &'static str, what: &str) -> Result<Pending> {
        let _ = self.fd(op)?;
        let pending = Pending::from_u8(self.pending.load(Ordering::Relaxed));
        if !want.contains(&pending) {
            return Err(Error::invalid(
                op,
                format!("{op} must follow a run() that returned {what}"),
            ));
        }
        self.pending.store(Pending::None as u8, Ordering::Relaxed);
        Ok(pending)
    }

    fn decode_exit(&self) -> VcpuExit {
        let run = self.kvm_run();
        // SAFETY (every union read below): the exit reason names the active member,
        // and every member is plain old data, valid for any bit pattern.
        match run.exit_reason {
            KVM_EXIT_IO => {
                let io = unsafe { run.__bindgen_anon_1.io };
                let port = self.vm.shared().config.hypercall_port;
                if io.direction == KVM_EXIT_IO_OUT as u8 && io.count == 1 && Some(io.port) == port {
                    self.pending.store(Pending::PortHypercall as u8, Ordering::Relaxed);
                    return VcpuExit::Hypercall;
                }
                if io.direction == KVM_EXIT_IO_IN as u8 {
                    // "Zero by default": the guest reads 0 unless a handler fills the data.
                    let len = io.size as usize * io.count as usize;
                    if let Some(data) = self.shared.slice_mut(io.data_offset as usize, len) {
                        data.fill(0);
                    }
                }
                self.pending.store(Pending::Io as u8, Ordering::Relaxed);
                VcpuExit::Io
            }
            KVM_EXIT_MMIO => {
                let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
                if mmio.is_write == 0 {
                    mmio.data = [0; 8];
                }
                self.pending.store(Pending::Mmio as u8, Ordering::Relaxed);
                VcpuExit::Mmio
            }
            KVM_EXIT_HYPERCALL => {
                self.pending.store(Pending::KvmHypercall as u8, Ordering::Relaxed);
                VcpuExit::Hypercall
            }
            KVM_EXIT_HLT => VcpuExit::Hlt,
            KVM_EXIT_SHUTDOWN => VcpuExit::Shutdown,
            KVM_EXIT_INTR => VcpuExit::Intr,
            KVM_EXIT_FAIL_ENTRY => VcpuExit::FailEntry {
                hardware_entry_failure_reason: unsafe { run.__bindgen_anon_1.fail_entry.hardware_entry_failure_reason },
            },
            KVM_EXIT_INTERNAL_ERROR => VcpuExit::InternalError {
                suberror: unsafe { run.__bindgen_anon_1.internal.suberror },
            },
            KVM_EXIT_SYSTEM_EVENT => match unsafe { run.__bindgen_anon_1.system_event.type_ } {
                KVM_SYSTEM_EVENT_SHUTDOWN => VcpuExit::SystemEventShutdown,
                KVM_SYSTEM_EVENT_RESET => VcpuExit::SystemEventReset,
                KVM_SYSTEM_EVENT_CRASH => VcpuExit::SystemEventCrash,
                _ => VcpuExit::Unknown {
                    reason: KVM_EXIT_SYSTEM_EVENT,
                },
            },
            KVM_EXIT_EXCEPTION => {
                let ex = unsafe { run.__bindgen_anon_1.ex };
                VcpuExit::Exception {
                    exception: ex.exception,
                    error_code: ex.error_code,
                }
            }
            KVM_EXIT_DEBUG => {
                let arch = unsafe { run.__bindgen_anon_1.debug.arch };
                VcpuExit::Debug {
                    exception: arch.exception,
                    pc: arch.pc,
                    dr6: arch.dr6,
                    dr7: arch.dr7,
                }
            }
            KVM_EXIT_IRQ_WINDOW_OPEN => VcpuExit::IrqWindowOpen,
            KVM_EXIT_IOAPIC_EOI => VcpuExit::IoapicEoi {
                vector: unsafe { run.__bindgen_anon_1.eoi.vector },
            },
            KVM_EXIT_SET_TPR => VcpuExit::SetTpr,
            KVM_EXIT_TPR_ACCESS => VcpuExit::TprAccess,
            KVM_EXIT_X86_BUS_LOCK => VcpuExit::BusLock,
            KVM_EXIT_X86_RDMSR | KVM_EXIT_X86_WRMSR => {
                let msr = unsafe { run.__bindgen_anon_1.msr };
                VcpuExit::MsrAccess {
                    index: msr.index,
                    data: msr.data,
                    write: run.exit_reason == KVM_EXIT_X86_WRMSR,
                }
            }
            reason => VcpuExit::Unknown { reason },
        }
    }

    /// Where the pending `Io` or `Mmio` exit's data is, checked against the mapping.
    /// `None` when the last exit was neither (or was already handled).
    pub fn io_access(&self) -> Option<IoAccess> {
        self.access_for(Pending::from_u8(self.pending.load(Ordering::Relaxed)))
    }

    fn access_for(&self, pending: Pending) -> Option<IoAccess> {
        let run = self.kvm_run();
        let base = run as *mut kvm_run as usize;
        let access = match pending {
            Pending::Io | Pending::PortHypercall => {
                // SAFETY: an Io exit (plain or hypercall) is pending: `io` is live.
                let io = unsafe { run.__bindgen_anon_1.io };
                IoAccess {
                    address: io.port.into(),
                    size: io.size as usize,
                    count: io.count as usize,
                    is_write: io.direction == KVM_EXIT_IO_OUT as u8,
                    data_offset: io.data_offset as usize,
                }
            }
            Pending::Mmio => {
                // SAFETY: an Mmio exit is pending: `mmio` is live.
                let mmio = unsafe { &run.__bindgen_anon_1.mmio };
                IoAccess {
                    address: mmio.phys_addr,
                    size: mmio.len as usize,
                    count: 1,
                    is_write: mmio.is_write != 0,
                    data_offset: mmio.data.as_ptr() as usize - base,
                }
            }
            _ => return None,
        };
        // Never trust the sizes: the data must be 1- to 8-byte elements inside the mapping.
        let len = access.size.checked_mul(access.count)?;
        let fits = access
            .data_offset
            .checked_add(len)
            .is_some_and(|end| end <= self.shared.len());
        // MMIO may be any width from 1 to 8 (KVM splits wider or unaligned accesses
        // into such pieces); port I/O is 1, 2 or 4 bytes.
        (matches!(access.size, 1..=8) && access.count > 0 && fits).then_some(access)
    }

    /// The data of the pending access, `size * count` bytes of the mapping.
    #[allow(clippy::mut_from_ref)] // a slice of kvm_run: see `kvm_run`
    fn access_data(&self, access: &IoAccess) -> &mut [u8] {
        // io_access checked that this range lies inside the mapping.
        self.shared
            .slice_mut(access.data_offset, access.size * access.count)
            .unwrap_or_default()
    }

    /// Calls `handle_fn` once per element of the pending access, with the element's
    /// offset in the mapping; stops at the first error.
    fn each_element(
        &self,
        pending: Pending,
        op: &'static str,
        handle_fn: &mut dyn FnMut(IoParams, usize) -> Result<()>,
    ) -> Result<()> {
        let access = self
            .access_for(pending)
            .ok_or_else(|| Error::invalid(op, "KVM reported malformed I/O data"))?;
        let data = self.access_data(&access);
        for (i, element) in data.chunks_exact_mut(access.size).enumerate() {
            let operation = if access.is_write {
                IoOperation::Write(element)
            } else {
                IoOperation::Read(element)
            };
            handle_fn(
                IoParams {
                    address: access.address,
                    operation,
                },
                access.data_offset + i * access.size,
            )?;
        }
        Ok(())
    }

    /// Completes the pending `Io` (or, with `mmio`, `Mmio`) exit without a handler and
    /// says where its data is, for callers that read and write it in place (a read's
    /// data reaches the guest on the next `run`).
    pub fn take_access(&self, mmio: bool) -> Result<IoAccess> {
        let (op, want, what) = if mmio {
            ("handleMmio", Pending::Mmio, "Mmio")
        } else {
            ("handleIo", Pending::Io, "Io")
        };
        let pending = self.take_pending(&[want], op, what)?;
        self.access_for(pending)
            .ok_or_else(|| Error::invalid(op, "KVM reported malformed I/O data"))
    }

    /// Like [`Vcpu::handle_io`], also telling the handler each element's offset inside
    /// the `kvm_run` mapping, for zero-copy views of the data; a handler error stops
    /// at that element.
    pub fn handle_io_at(&self, handle_fn: &mut dyn FnMut(IoParams, usize) -> Result<()>) -> Result<()> {
        const OP: &str = "handleIo";
        let pending = self.take_pending(&[Pending::Io], OP, "Io")?;
        self.each_element(pending, OP, handle_fn)
    }

    /// Like [`Vcpu::handle_mmio`], also telling the handler the data's offset inside the
    /// `kvm_run` mapping.
    pub fn handle_mmio_at(&self, handle_fn: &mut dyn FnMut(IoParams, usize) -> Result<()>) -> Result<()> {
        const OP: &str = "handleMmio";
        let pending = self.take_pending(&[Pending::Mmio], OP, "Mmio")?;
        self.each_element(pending, OP, handle_fn)
    }
}

/// Where a pending `Io` or `Mmio` access's data lies in the `kvm_run` mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// Port or guest physical address.
    pub address: u64,
    /// Element width: 1, 2, 4 or 8.
    pub size: usize,
    /// Number of elements (string I/O), 1 otherwise.
    pub count: usize,
    /// True when the guest wrote.
    pub is_write: bool,
    /// Offset of the first element's data in the mapping.
    pub data_offset: usize,
}

impl Vcpu for KvmVcpu {
    fn run(&self) -> Result<VcpuExit> {
        const OP: &str = "run";
        if self.is_closed() {
            return Err(Error::closed(OP, "vcpu"));
        }
        if self.running.swap(true, Ordering::Acquire) {
            return Err(Error::new(
                crate::ErrorCode::Errno(libc::EBUSY),
                OP,
                "this vcpu is already running on another thread",
            ));
        }
        self.pending.store(Pending::None as u8, Ordering::Relaxed);
        if shutting_down() {
            self.requested.store(true, Ordering::Relaxed);
            self.running.store(false, Ordering::Release);
            return Err(Error::errno(OP, libc::EINTR));
        }
        let tid = TID.with(|t| *t);
        self.shared.runs.fetch_add(1, Ordering::Relaxed);
        self.shared.running_tid.store(tid, Ordering::Release);
        let result = ioctls::run(&self.fd);
        self.shared.running_tid.store(0, Ordering::Release);
        self.running.store(false, Ordering::Release);
        // Some KVMs report a signal as a successful run with exit reason KVM_EXIT_INTR:
        // one way for both, an interrupted run.
        let result = match result {
            Ok(()) if self.kvm_run().exit_reason == KVM_EXIT_INTR => Err(vmm_sys_util::errno::Error::new(libc::EINTR)),
            other => other,
        };
        match result {
            Ok(()) => Ok(self.decode_exit()),
            Err(e) => {
                if e.errno() == libc::EINTR {
                    let kicked = self.shared.kicked.swap(false, Ordering::AcqRel);
                    let immediate = self.shared.immediate_exit().load(Ordering::Acquire) != 0;
                    self.requested
                        .store(kicked || immediate || shutting_down(), Ordering::Relaxed);
                    if kicked {
                        // A kick is consumed by the run it interrupted.
                        self.shared.immediate_exit().store(0, Ordering::Release);
                    }
                }
                Err(Error::errno(OP, e.errno()))
            }
        }
    }

    fn id(&self) -> usize {
        self.id
    }

    fn set_immediate_exit(&self, exit: bool) {
        self.shared.immediate_exit().store(exit as u8, Ordering::Release);
        if !exit {
            self.shared.kicked.store(false, Ordering::Release);
        }
    }

    fn signal_handle(&self) -> VcpuSignalHandle {
        VcpuSignalHandle::new(self.shared.clone())
    }

    fn handle_mmio(&self, handle_fn: &mut dyn FnMut(IoParams) -> Result<()>) -> Result<()> {
        self.handle_mmio_at(&mut |params, _| handle_fn(params))
    }

    fn handle_io(&self, handle_fn: &mut dyn FnMut(IoParams)) -> Result<()> {
        self.handle_io_at(&mut |params, _| {
            handle_fn(params);
            Ok(())
        })
    }

    fn on_suspend(&self) -> Result<()> {
        let fd = self.fd("onSuspend")?;
        match fd.kvmclock_ctrl() {
            // As crosvm: EINVAL means the guest has not set up kvmclock (yet, or on this
            // vcpu), so there is nothing to tell it; ENOTTY means a KVM without the ioctl.
            Err(e) if e.errno() == libc::EINVAL || e.errno() == libc::ENOTTY => Ok(()),
            other => other.op("onSuspend"),
        }
    }

    unsafe fn enable_raw_capability(&self, cap: u32, args: &[u64; 4]) -> Result<()> {
        let enable = kvm_enable_cap {
            cap,
            args: *args,
            ..Default::default()
        };
        self.fd("enableRawCapability")?
            .enable_cap(&enable)
            .op("enableRawCapability")
    }

    fn handle_hypercall(&self, handle_fn: &mut dyn FnMut(&mut HypercallAbi) -> Result<()>) -> Result<()> {
        let mut abi = self.begin_hypercall()?;
        handle_fn(&mut abi)?;
        self.finish_hypercall(&abi)
    }
}

/// Hypercalls in two steps, for callers that answer the call somewhere else (another
/// thread, or a JS handler run after this returns): `handle_hypercall` is exactly
/// `begin_hypercall`, the handler, `finish_hypercall`.
impl KvmVcpu {
    /// After a `Hypercall` exit: the call, with the results the guest sees unless they
    /// are changed. The exit stays pending until [`Self::finish_hypercall`] or the next
    /// `run()`.
    pub fn begin_hypercall(&self) -> Result<HypercallAbi> {
        const OP: &str = "handleHypercall";
        let _ = self.fd(OP)?;
        match Pending::from_u8(self.pending.load(Ordering::Relaxed)) {
            Pending::PortHypercall => {
                let access = self
                    .access_for(Pending::PortHypercall)
                    .ok_or_else(|| Error::invalid(OP, "KVM reported malformed I/O data"))?;
                let data = self.access_data(&access);
                let mut id = [0u8; 8];
                id[..access.size].copy_from_slice(&data[..access.size]);
                x86_64::port_hypercall_abi(self, u64::from_le_bytes(id))
            }
            Pending::KvmHypercall => {
                // SAFETY: a KVM_EXIT_HYPERCALL is pending, so `hypercall` is live.
                let hc = unsafe { &self.kvm_run().__bindgen_anon_1.hypercall };
                let args = hc.args.map(|a| a as usize);
                Ok(HypercallAbi::new(hc.nr as usize, &args, &[hc.ret as usize]))
            }
            _ => Err(Error::invalid(
                OP,
                format!("{OP} must follow a run() that returned Hypercall"),
            )),
        }
    }

    /// Writes `abi`'s results into the vcpu and completes the pending `Hypercall` exit.
    pub fn finish_hypercall(&self, abi: &HypercallAbi) -> Result<()> {
        const OP: &str = "handleHypercall";
        match self.take_pending(&[Pending::PortHypercall, Pending::KvmHypercall], OP, "Hypercall")? {
            Pending::PortHypercall => x86_64::port_hypercall_results(self, abi),
            _ => {
                // SAFETY: a KVM_EXIT_HYPERCALL was pending, so `hypercall` is live.
                let hc = unsafe { &mut self.kvm_run().__bindgen_anon_1.hypercall };
                hc.ret = abi.get_results().first().copied().unwrap_or(0) as u64;
                Ok(())
            }
        }
    }
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        self.close();
        unregister(&self.shared);
    }
}
