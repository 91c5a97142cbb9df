//! The exit state machine, in one place: after `KVM_RUN` the vcpu decodes `kvm_run`
//! into its [`ExitRecord`], marks what is pending, and completes it — a read's data and a
//! hypercall's results are in the vcpu before the handler's caller gets control back.

use std::cell::UnsafeCell;
use std::mem::offset_of;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use kvm_bindings::*;

use super::arch;
use super::vcpu::KvmVcpu;
use crate::error::{Error, Result};
use crate::record::{ExitRecord, Pending};
use crate::{HypercallAbi, IoOperation, IoParams, VcpuExit};

/// Where a vcpu keeps its exit record: its own, until a binding lends it memory that its
/// callers can read in place (see [`KvmVcpu::set_exit_record`]).
pub(crate) struct RecordSlot {
    own: Box<UnsafeCell<ExitRecord>>,
    current: AtomicPtr<ExitRecord>,
    /// The last exit with its payload (the record has its kind only).
    last: UnsafeCell<VcpuExit>,
}

impl RecordSlot {
    pub(crate) fn new() -> Self {
        let own = Box::new(UnsafeCell::new(ExitRecord::default()));
        let current = AtomicPtr::new(own.get());
        RecordSlot {
            own,
            current,
            last: UnsafeCell::new(VcpuExit::Intr),
        }
    }
}

// SAFETY: the record and `last` are written only by the thread inside `run()` (the
// lifecycle admits one at a time) and by the handler of the exit that run returned, which
// runs on that thread or on one the runner waits for while it is outside `run()`; other
// threads never touch them (closing does not). The pointer is swapped only while the
// vcpu is held out of `run()` (`set_exit_record`). So no two threads access them at once.
unsafe impl Send for RecordSlot {}
// SAFETY: as above.
unsafe impl Sync for RecordSlot {}

impl KvmVcpu {
    /// The exit record. Written by `run()` and the `handle_*` methods, on the vcpu's
    /// thread; see the `SAFETY` note on `RecordSlot` for why that is one thread at a time.
    // The record is plain data outside Rust's borrow tracking (it may live in JS memory);
    // callers hold one borrow at a time.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn record(&self) -> &mut ExitRecord {
        // SAFETY: `current` points at our own record or at one lent by
        // `set_exit_record`, whose contract keeps it valid and aligned while in use; only
        // the thread running the vcpu (or one it waits for) touches it.
        unsafe { &mut *self.records.current.load(Ordering::Acquire) }
    }

    /// Makes the vcpu write its exit record at `record` from now on (its current content
    /// is copied there), so that a caller can read it without calls, e.g. through a typed
    /// array in JS. `None` goes back to the vcpu's own record. The swap waits until no
    /// thread is inside `run()` (kicking one that is, up to [`super::CLOSE_WAIT`]), so no
    /// run writes the old record after this returns true. On false nothing changed, and
    /// the memory lent before must stay valid for as long as the vcpu lives.
    ///
    /// # Safety
    ///
    /// `record` must be valid for reads and writes of an [`ExitRecord`], aligned to 8
    /// bytes, and stay so until this vcpu is dropped or another record is set; nothing
    /// but this vcpu's run loop and handlers may use it meanwhile.
    pub unsafe fn set_exit_record(&self, record: Option<NonNull<ExitRecord>>) -> bool {
        let Some(_held) = self.hold_out_of_run() else {
            return false;
        };
        let target = record.map_or(self.records.own.get(), NonNull::as_ptr);
        let now = *self.record();
        // SAFETY: the caller's contract (or our own box).
        unsafe { target.write(now) };
        self.records.current.store(target, Ordering::Release);
        true
    }

    /// The exit the last `run()` returned, with its payload (`Intr` after an interrupted
    /// run).
    pub fn last_exit(&self) -> VcpuExit {
        // SAFETY: written only by `set_last`, on the thread running the vcpu; readers are
        // that thread or one it waits for (see `record`).
        unsafe { *self.records.last.get() }
    }

    /// Records `exit` as the last one, in the record too.
    pub(crate) fn set_last(&self, exit: VcpuExit) {
        self.record().kind = exit.index() as u32;
        // SAFETY: see `last_exit`.
        unsafe { *self.records.last.get() = exit };
    }

    /// The `u32` field at `offset` (an `offset_of!` a `u32` field of [`ExitRecord`]) as an
    /// atomic: a snapshot reads the exit's state from another thread while the vcpu's JS
    /// thread may store `answered`.
    fn field(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset` names an aligned u32 inside the live record (see `record`); the
        // fields read this way are only ever accessed whole.
        unsafe {
            AtomicU32::from_ptr(
                self.records
                    .current
                    .load(Ordering::Acquire)
                    .cast::<u8>()
                    .add(offset)
                    .cast(),
            )
        }
    }

    /// What is pending: nothing once the exit was answered in place (`answered == seq`).
    pub fn pending(&self) -> Pending {
        let seq = self.field(offset_of!(ExitRecord, seq)).load(Ordering::Acquire);
        if self.field(offset_of!(ExitRecord, answered)).load(Ordering::Acquire) == seq {
            return Pending::None;
        }
        Pending::from_u32(self.field(offset_of!(ExitRecord, pending)).load(Ordering::Acquire))
    }

    pub(crate) fn set_pending(&self, pending: Pending) {
        self.field(offset_of!(ExitRecord, pending))
            .store(pending as u32, Ordering::Release);
    }

    /// A new run: its exit gets a new number, and nothing is pending yet. (Plain
    /// stores: only the thread inside `run()` writes these, and a snapshot, the one
    /// reader elsewhere, holds the vcpu out of `run()`.)
    #[inline]
    pub(crate) fn new_exit(&self) {
        let rec = self.record();
        rec.seq = rec.seq.wrapping_add(1);
        rec.pending = Pending::None as u32;
    }

    /// Whether a handler of this vcpu's is running now (`run()` would be refused).
    pub fn in_handler(&self) -> bool {
        self.run_shared().lifecycle.is_handling()
    }

    /// Fills the record from `kvm_run` after a successful `KVM_RUN`.
    pub(crate) fn decode_exit(&self) -> VcpuExit {
        let run = self.kvm_run();
        // SAFETY (every union read below): the exit reason names the active member, and
        // every member is plain old data, valid for any bit pattern.
        let exit = match run.exit_reason {
            // x86's commonest exit, decoded here rather than after the arch's own table.
            #[cfg(target_arch = "x86_64")]
            KVM_EXIT_IO => arch::decode_io(self, run),
            KVM_EXIT_MMIO => {
                let base = run as *const kvm_run as usize;
                let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
                if mmio.is_write == 0 {
                    // "Zero by default": the guest reads 0 unless a handler fills the data.
                    mmio.data = [0; 8];
                }
                let offset = mmio.data.as_ptr() as usize - base;
                self.describe_access(Pending::Mmio, mmio.phys_addr, mmio.len, 1, mmio.is_write != 0, offset)
            }
            KVM_EXIT_HYPERCALL => match arch::kvm_hypercall(self, run) {
                Some(abi) => {
                    self.record().set_call(&abi);
                    self.set_pending(Pending::Hypercall);
                    VcpuExit::Hypercall
                }
                None => VcpuExit::Unknown {
                    reason: KVM_EXIT_HYPERCALL,
                },
            },
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
            reason => arch::decode_arch_exit(self, run).unwrap_or(VcpuExit::Unknown { reason }),
        };
        self.set_last(exit);
        exit
    }

    /// Describes an `Io`/`Mmio` access whose first element's data is at `data_offset` in
    /// the mapping, and marks it pending; an access whose sizes do not fit the mapping
    /// (never trust the kernel's numbers) is reported as `Unknown`.
    pub(crate) fn describe_access(
        &self,
        pending: Pending,
        address: u64,
        size: u32,
        count: u32,
        is_write: bool,
        data_offset: usize,
    ) -> VcpuExit {
        let exit = if pending == Pending::Io {
            VcpuExit::Io
        } else {
            VcpuExit::Mmio
        };
        // MMIO may be any width from 1 to 8 (KVM splits wider or unaligned accesses into
        // such pieces); port I/O is 1, 2 or 4 bytes.
        let len = (size as usize).checked_mul(count as usize);
        let fits = len
            .and_then(|len| data_offset.checked_add(len))
            .is_some_and(|end| end <= self.run_shared().len());
        if !(matches!(size, 1..=8) && count > 0 && fits) {
            return VcpuExit::Unknown {
                reason: self.kvm_run().exit_reason,
            };
        }
        if !is_write {
            if let Some(data) = self.run_shared().slice_mut(data_offset, size as usize * count as usize) {
                data.fill(0);
            }
        }
        let rec = self.record();
        rec.address = address;
        rec.size = size;
        rec.remaining = count;
        rec.is_write = is_write as u32;
        rec.data_offset = data_offset as u32;
        self.set_pending(pending);
        exit
    }

    /// Moves a string access on to its next element; false after the last one.
    pub fn next_element(&self) -> bool {
        let rec = self.record();
        if rec.remaining <= 1 {
            rec.remaining = 0;
            return false;
        }
        rec.remaining -= 1;
        rec.data_offset += rec.size;
        true
    }

    /// Takes the pending exit, which must be `want`, and marks a handler running.
    pub(crate) fn begin(&self, want: Pending, op: &'static str) -> Result<()> {
        let _ = self.fd(op)?;
        if self.pending() != want {
            return Err(Error::invalid(
                op,
                format!("{op} must follow a run() that returned {want:?}"),
            ));
        }
        self.set_pending(Pending::Handling);
        self.run_shared().lifecycle.set_handling(true);
        Ok(())
    }

    /// A handler finished (or failed): nothing is pending any more.
    pub(crate) fn end(&self) {
        self.run_shared().lifecycle.set_handling(false);
        self.set_pending(Pending::None);
    }

    /// Calls `handle_fn` once per element of the pending access (`want`: `Io` or
    /// `Mmio`), in order; stops at the first error. `handle_io`/`handle_mmio` with a
    /// handler that may fail.
    pub fn handle_access(
        &self,
        want: Pending,
        op: &'static str,
        handle_fn: &mut dyn FnMut(IoParams) -> Result<()>,
    ) -> Result<()> {
        self.begin(want, op)?;
        let result = (|| loop {
            let rec = *self.record();
            let data = self
                .run_shared()
                .slice_mut(rec.data_offset as usize, rec.size as usize)
                .ok_or_else(|| Error::invalid(op, "KVM reported malformed I/O data"))?;
            let operation = if rec.is_write != 0 {
                IoOperation::Write(data)
            } else {
                IoOperation::Read(data)
            };
            handle_fn(IoParams {
                address: rec.address,
                operation,
            })?;
            if !self.next_element() {
                return Ok(());
            }
        })();
        self.end();
        result
    }

    /// The pending hypercall as the record describes it, results included.
    pub(crate) fn handle_call(&self, handle_fn: &mut dyn FnMut(&mut HypercallAbi) -> Result<()>) -> Result<()> {
        const OP: &str = "handleHypercall";
        self.begin(Pending::Hypercall, OP)?;
        let mut abi = self.record().call();
        let result = handle_fn(&mut abi);
        if result.is_ok() {
            self.record().set_call(&abi);
        }
        self.end();
        result.and_then(|()| self.write_results())
    }

    /// After a handler set the pending hypercall's results in the record: writes them
    /// into the vcpu and completes the exit. For callers that let a handler fill the
    /// record in place (the JS facade); [`crate::Vcpu::handle_hypercall`] does this itself.
    pub fn complete_hypercall(&self) -> Result<()> {
        const OP: &str = "handleHypercall";
        self.begin(Pending::Hypercall, OP)?;
        self.end();
        self.write_results()
    }

    /// Writes the record's hypercall results where the guest reads them.
    fn write_results(&self) -> Result<()> {
        let abi = self.record().call();
        if self.kvm_run().exit_reason == KVM_EXIT_HYPERCALL {
            return arch::complete_kvm_hypercall(self, &abi);
        }
        arch::write_hypercall_results(self, &abi)
    }
}
