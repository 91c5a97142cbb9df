//! Guest RAM: one anonymous host mapping per memory slot.

use std::ptr::NonNull;

use crate::error::{Error, Result};

/// Host page size; guest memory addresses and sizes must be multiples of it.
pub const PAGE_SIZE: u64 = 4096;

/// One mapped region of guest physical memory. Shared (`Arc`) between the VM and any
/// zero-copy view of it, so the mapping outlives the slot for as long as a view exists.
pub struct GuestRegion {
    host: NonNull<u8>,
    size: usize,
    guest_address: u64,
    readonly: bool,
}

// SAFETY: the region is plain anonymous memory; concurrent guest and host accesses are
// the VMM's protocol to keep (as with any shared guest RAM), never Rust aliasing.
unsafe impl Send for GuestRegion {}
// SAFETY: as above.
unsafe impl Sync for GuestRegion {}

impl GuestRegion {
    /// Maps `size` bytes of zeroed anonymous memory for guest address `guest_address`.
    pub(crate) fn new(guest_address: u64, size: usize, readonly: bool) -> Result<Self> {
        // SAFETY: a fresh private anonymous mapping; the result is checked and unmapped
        // exactly once in Drop. MAP_NORESERVE: untouched guest RAM costs nothing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOMEM);
            return Err(Error::errno("addMemory", errno));
        }
        let host = NonNull::new(addr.cast::<u8>()).ok_or_else(|| Error::invalid("addMemory", "mmap returned null"))?;
        Ok(GuestRegion {
            host,
            size,
            guest_address,
            readonly,
        })
    }

    /// The host address of the region's first byte.
    pub fn host_ptr(&self) -> *mut u8 {
        self.host.as_ptr()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Always false: empty regions are refused.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The guest physical address of the first byte.
    pub fn guest_address(&self) -> u64 {
        self.guest_address
    }

    /// Whether the guest sees it read-only.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The offset of `[gpa, gpa + len)` inside this region, if it lies wholly inside.
    pub fn offset_of(&self, gpa: u64, len: usize) -> Option<usize> {
        let offset = gpa.checked_sub(self.guest_address)?;
        let end = offset.checked_add(len as u64)?;
        (end <= self.size as u64).then_some(offset as usize)
    }

    /// Copies guest memory at `offset` into `buf`. The caller checked the bounds.
    pub(crate) fn read_at(&self, offset: usize, buf: &mut [u8]) {
        // SAFETY: offset + buf.len() <= size (checked by offset_of); the source is our
        // live mapping and the destination a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.host_ptr().add(offset), buf.as_mut_ptr(), buf.len()) }
    }

    /// Copies `data` into guest memory at `offset`. The caller checked the bounds.
    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) {
        // SAFETY: as in read_at, in the other direction.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.host_ptr().add(offset), data.len()) }
    }
}

impl std::fmt::Debug for GuestRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRegion")
            .field("guest_address", &format_args!("{:#x}", self.guest_address))
            .field("size", &format_args!("{:#x}", self.size))
            .field("readonly", &self.readonly)
            .finish()
    }
}

impl Drop for GuestRegion {
    fn drop(&mut self) {
        // SAFETY: created in `new` with this size; unmapped exactly once, when the last
        // owner (VM slot or JS view) lets go.
        unsafe {
            libc::munmap(self.host.as_ptr().cast(), self.size);
        }
    }
}
