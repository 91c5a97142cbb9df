//! Our own mapping of a vcpu's `kvm_run` page, shared between the vcpu and its signal
//! handles (crosvm's design: the mapping lives as long as any holder).

use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8};

use kvm_bindings::kvm_run;

use crate::error::{Error, Result};

/// A shared `mmap` of one vcpu's `kvm_run` structure plus the state a kick needs.
pub struct RunShared {
    base: NonNull<kvm_run>,
    size: usize,
    /// The kernel thread id of the thread inside `KVM_RUN`, 0 when none is.
    pub(crate) running_tid: AtomicI32,
    /// Set by a kick; tells `run()` to clear `immediate_exit` after the interrupted run.
    pub(crate) kicked: AtomicBool,
    /// True once the vcpu is closed: kicks do nothing more.
    pub(crate) closed: AtomicBool,
    /// Set by a debugger's kick, which `run()` takes itself.
    pub(crate) debug_kick: AtomicBool,
    /// Counts entries into `KVM_RUN`, so a watcher can tell one long run from many.
    pub(crate) runs: AtomicU64,
}

// SAFETY: the mapping is process-wide memory; the fields other threads touch
// (`immediate_exit` and the atomics) are written with single-byte or atomic stores.
unsafe impl Send for RunShared {}
// SAFETY: as above; everything else in `kvm_run` is only touched by the vcpu's thread.
unsafe impl Sync for RunShared {}

impl RunShared {
    /// Maps `size` bytes of the vcpu fd (`KVM_GET_VCPU_MMAP_SIZE`).
    pub(crate) fn map(vcpu: &impl AsRawFd, size: usize) -> Result<Self> {
        if size < std::mem::size_of::<kvm_run>() {
            return Err(Error::invalid("createVcpu", "kvm_run mapping is too small"));
        }
        // SAFETY: a fresh shared mapping of the vcpu fd at offset 0, the size KVM
        // reported; we check the result before use and unmap it exactly once in Drop.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Error::errno(
                "createVcpu",
                std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL),
            ));
        }
        let base =
            NonNull::new(addr.cast::<kvm_run>()).ok_or_else(|| Error::invalid("createVcpu", "mmap returned null"))?;
        Ok(RunShared {
            base,
            size,
            running_tid: AtomicI32::new(0),
            kicked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            debug_kick: AtomicBool::new(false),
            runs: AtomicU64::new(0),
        })
    }

    /// The `kvm_run` structure, for the vcpu's own thread.
    pub(crate) fn run(&self) -> *mut kvm_run {
        self.base.as_ptr()
    }

    /// `kvm_run.exit_reason`, for the vcpu's own thread after a run.
    pub(crate) fn exit_reason(&self) -> u32 {
        // SAFETY: the mapping is live for `self`'s lifetime; the kernel writes the field
        // only inside KVM_RUN, which the thread asking has returned from.
        unsafe { (*self.run()).exit_reason }
    }

    /// Start of the whole mapping (the `kvm_run` struct plus the PIO data page).
    pub fn base_ptr(&self) -> *mut u8 {
        self.base.as_ptr().cast()
    }

    /// Length of the whole mapping in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Always false: a mapping has at least one `kvm_run`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `kvm_run.immediate_exit`, as an atomic so any thread (or a signal handler) may
    /// store it.
    pub(crate) fn immediate_exit(&self) -> &AtomicU8 {
        // SAFETY: `immediate_exit` is a u8 inside the live mapping; AtomicU8 has the
        // same size and alignment as u8, and the kernel reads it only on KVM_RUN entry.
        unsafe { &*(std::ptr::addr_of_mut!((*self.run()).immediate_exit) as *const AtomicU8) }
    }

    /// A bounds-checked slice of the mapping (the PIO data area lies past `kvm_run`).
    #[allow(clippy::mut_from_ref)] // the mapping is not Rust-owned memory; see SAFETY
    pub(crate) fn slice_mut(&self, offset: usize, len: usize) -> Option<&mut [u8]> {
        let end = offset.checked_add(len)?;
        if end > self.size {
            return None;
        }
        // SAFETY: [offset, end) is inside the mapping, which outlives `self`; only the
        // vcpu's thread calls this, between runs, so nothing else writes it meanwhile.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base_ptr().add(offset), len) })
    }
}

impl Drop for RunShared {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `map` with this size and is unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.size);
        }
    }
}
