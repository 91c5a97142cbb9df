//! Our own mapping of a vcpu's `kvm_run` page, shared between the vcpu and its signal
//! handles (crosvm's design: the mapping lives as long as any holder).

use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU8;

use kvm_bindings::kvm_run;

use super::kick::KickState;
use super::lifecycle::Lifecycle;
use crate::error::{Error, Result};

/// A shared `mmap` of one vcpu's `kvm_run` structure plus what its signal handles share
/// with it: the kick and the lifecycle.
pub struct RunShared {
    base: NonNull<kvm_run>,
    size: usize,
    /// The only writer of `immediate_exit` and of the thread to signal.
    pub(crate) kick: KickState,
    /// The only writer of the vcpu's lifecycle (running, held, closed).
    pub(crate) lifecycle: Lifecycle,
}

// SAFETY: the mapping is process-wide memory; other threads touch only
// `immediate_exit`, through `KickState`'s atomic stores, and the atomics.
unsafe impl Send for RunShared {}
// SAFETY: as above; everything else in `kvm_run` is only touched by the thread inside
// `run()` (the lifecycle lets one in at a time).
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
        // SAFETY: `immediate_exit` is a u8 inside the live mapping, which `RunShared`
        // unmaps only in its Drop, after the `KickState` field is gone with it; AtomicU8
        // has the same size and alignment as u8.
        let kick = unsafe {
            KickState::new(NonNull::new_unchecked(
                std::ptr::addr_of_mut!((*base.as_ptr()).immediate_exit).cast::<AtomicU8>(),
            ))
        };
        Ok(RunShared {
            base,
            size,
            kick,
            lifecycle: Lifecycle::default(),
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
