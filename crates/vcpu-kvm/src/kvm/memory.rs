//! Guest RAM: one memory file (a memfd) per VM, each region a window into it, mapped
//! once for KVM and once more for each zero-copy view (so every view has its own
//! address, and outlives the slot safely). One file, not one per region: a VM with
//! thousands of regions holds one descriptor, not thousands. A region restored from a
//! snapshot is instead a private (copy-on-write) mapping of the snapshot file, which
//! its views share.

use std::fs::File;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use super::write_log::WriteLog;
use crate::error::{Error, Result};

/// Host page size; guest memory addresses and sizes must be multiples of it.
pub const PAGE_SIZE: u64 = 4096;

/// A mapping of some guest memory, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// The part of the memory file it maps (none for a private mapping), kept while the
    /// mapping lives.
    _extent: Option<Arc<Extent>>,
    /// For a private mapping of a file: the file and the offset it maps from, where a
    /// page's original bytes can be read again.
    source: Option<(File, u64)>,
}

// SAFETY: plain shared memory; concurrent guest and host accesses are the VMM's protocol
// to keep (as with any shared guest RAM), never Rust aliasing.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(extent: &Arc<Extent>, op: &'static str) -> Result<Self> {
        let ptr = map(
            extent.len,
            libc::MAP_SHARED,
            extent.file.file.as_raw_fd(),
            extent.offset,
            op,
        )?;
        Ok(Mapping {
            ptr,
            len: extent.len,
            _extent: Some(extent.clone()),
            source: None,
        })
    }

    /// A private, copy-on-write mapping of `len` bytes of `file` at `offset` (page
    /// aligned): pages are read from the file on first touch, and a written page becomes
    /// this mapping's own; the file never changes. `file: None` maps zeroed memory.
    pub(crate) fn private(file: Option<&File>, offset: u64, len: usize, op: &'static str) -> Result<Self> {
        let (flags, fd) = match file {
            Some(f) => (libc::MAP_PRIVATE, f.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        let ptr = map(len, flags, fd, offset, op)?;
        // Without a second descriptor the mapping still works; only a reset's copy-back
        // of its pages falls back to dropping them.
        let source = file.and_then(|f| f.try_clone().ok()).map(|f| (f, offset));
        Ok(Mapping {
            ptr,
            len,
            _extent: None,
            source,
        })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty mappings are refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; unmapped exactly once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// `mmap` of `len` read-write bytes; `flags` say shared, private or anonymous.
fn map(len: usize, flags: i32, fd: i32, offset: u64, op: &'static str) -> Result<NonNull<u8>> {
    if len == 0 {
        return Err(Error::invalid(op, "an empty mapping"));
    }
    // SAFETY: a fresh mapping at an address the kernel picks, of a descriptor we hold
    // open (or none, for anonymous memory) at a page-aligned offset; the result is
    // checked, and its owner unmaps it exactly once. MAP_NORESERVE: untouched guest RAM
    // costs nothing.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_NORESERVE,
            fd,
            offset as libc::off_t,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(Error::errno(op, last_errno()));
    }
    NonNull::new(addr.cast::<u8>()).ok_or_else(|| Error::invalid(op, "mmap returned null"))
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}

/// A VM's memory file: a memfd that grows as regions are added, each region a page-
/// aligned extent of it.
pub(crate) struct MemoryFile {
    file: File,
    /// The end of the last extent handed out (extents are never moved or reused; a
    /// released one is punched out of the file, so it costs no memory).
    end: Mutex<u64>,
}

impl MemoryFile {
    pub(crate) fn new(op: &'static str) -> Result<Arc<Self>> {
        // SAFETY: memfd_create with a static NUL-terminated name; the fd is checked and
        // owned by the File from here on.
        let fd = unsafe { libc::memfd_create(c"vcpu-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::errno(op, last_errno()));
        }
        Ok(Arc::new(MemoryFile {
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            file: unsafe { File::from_raw_fd(fd) },
            end: Mutex::new(0),
        }))
    }

    /// `len` fresh zeroed bytes at the end of the file.
    fn allocate(self: &Arc<Self>, len: usize, op: &'static str) -> Result<Arc<Extent>> {
        let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        let offset = *end;
        let new_end = offset
            .checked_add(len as u64)
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or_else(|| Error::invalid(op, "the VM's memory file is full"))?;
        self.file
            .set_len(new_end)
            .map_err(|e| Error::errno(op, e.raw_os_error().unwrap_or(libc::ENOMEM)))?;
        *end = new_end;
        Ok(Arc::new(Extent {
            file: self.clone(),
            offset,
            len,
        }))
    }
}

/// A part of the memory file that backs one region (and its views); given back to the
/// system when the last holder goes.
pub(crate) struct Extent {
    file: Arc<MemoryFile>,
    offset: u64,
    len: usize,
}

impl Drop for Extent {
    fn drop(&mut self) {
        // SAFETY: punches a hole in our own memfd over this extent's range, which no
        // mapping uses any more (every mapping holds the extent); the file keeps its size.
        unsafe {
            libc::fallocate(
                self.file.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.offset as libc::off_t,
                self.len as libc::off_t,
            );
        }
    }
}

/// One region of guest physical memory: where its memory comes from, the mapping KVM
/// uses, and what was written since the VM's last snapshot.
pub struct GuestRegion {
    /// The extent of the VM's memory file, which each view maps again; `None` for a
    /// region restored from a snapshot, whose private mapping cannot be mapped twice.
    extent: Option<Arc<Extent>>,
    mapping: Arc<Mapping>,
    guest_address: u64,
    readonly: bool,
    /// Whether dropping a page of the mapping brings back what a reset returns to for
    /// it: the snapshot file's page (a region restored from a full snapshot, nothing
    /// copied into it), or zero (the memory file, whose pages are removed).
    revertible: bool,
    pub(crate) written: WriteLog,
}

// SAFETY: the region is plain anonymous memory; concurrent guest and host accesses are
// the VMM's protocol to keep (as with any shared guest RAM), never Rust aliasing.
unsafe impl Send for GuestRegion {}
// SAFETY: as above.
unsafe impl Sync for GuestRegion {}

impl GuestRegion {
    /// `size` bytes of zeroed memory from `file`, for guest address `guest_address`.
    pub(crate) fn new(file: &Arc<MemoryFile>, guest_address: u64, size: usize, readonly: bool) -> Result<Self> {
        const OP: &str = "addMemory";
        let extent = file.allocate(size, OP)?;
        let mapping = Arc::new(Mapping::new(&extent, OP)?);
        Ok(GuestRegion {
            extent: Some(extent),
            mapping,
            guest_address,
            readonly,
            revertible: true,
            written: WriteLog::default(),
        })
    }

    /// A region over `mapping` (memory restored from a snapshot); `from_file`: a private
    /// mapping of the file's image with nothing copied into it.
    pub(crate) fn restored(mapping: Mapping, guest_address: u64, readonly: bool, from_file: bool) -> Self {
        GuestRegion {
            extent: None,
            mapping: Arc::new(mapping),
            guest_address,
            readonly,
            revertible: from_file,
            written: WriteLog::default(),
        }
    }

    /// Whether a reset can bring pages back by dropping them (see the field).
    pub(crate) fn revertible(&self) -> bool {
        self.revertible
    }

    /// Drops pages `[first, first + count)`: a restored region's come back from its file
    /// on the next touch, a memory-file region's read as zero (and free their memory).
    pub(crate) fn drop_pages(&self, first: usize, count: usize) {
        let advice = if self.extent.is_some() {
            libc::MADV_REMOVE
        } else {
            libc::MADV_DONTNEED
        };
        // SAFETY: the range lies inside our own live mapping (callers pass pages of the
        // region); madvise changes only what backs those pages, which no Rust reference
        // borrows (the VM's vcpus are held out of the guest meanwhile).
        unsafe {
            libc::madvise(
                self.host_ptr().add(first * PAGE_SIZE as usize).cast(),
                count * PAGE_SIZE as usize,
                advice,
            );
        }
    }

    /// Puts page `p` back as a drop would bring it (see [`Self::drop_pages`]) but by
    /// writing it: zeros for a memory-file region, the file's bytes for one restored
    /// from a file. The page stays mapped, so the guest's next touch does not fault
    /// (dear under a nested KVM), and stays the region's own memory. Falls back to a
    /// drop where the bytes cannot be had.
    pub(crate) fn rewrite_page(&self, p: usize) {
        let at = p * PAGE_SIZE as usize;
        // SAFETY: page `p` lies inside our own live mapping (callers pass pages of the
        // region); no Rust reference borrows guest memory and the vcpus are held out of
        // the guest meanwhile.
        let page = unsafe { self.host_ptr().add(at) };
        if self.extent.is_some() {
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(page, 0, PAGE_SIZE as usize) };
            return;
        }
        let read = self.mapping.source.as_ref().map(|(file, offset)| {
            // SAFETY: as above; pread writes at most PAGE_SIZE bytes into the page.
            unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    page.cast(),
                    PAGE_SIZE as usize,
                    (offset + at as u64) as libc::off_t,
                )
            }
        });
        if read != Some(PAGE_SIZE as isize) {
            self.drop_pages(p, 1);
        }
    }

    /// Copies `pages` (whole pages, from page `first`) into the region, unlogged (a reset
    /// puts back what was there).
    pub(crate) fn put_pages(&self, first: usize, pages: &[u8]) {
        // SAFETY: as in read_at; the caller passes whole pages of the region.
        unsafe {
            std::ptr::copy_nonoverlapping(
                pages.as_ptr(),
                self.host_ptr().add(first * PAGE_SIZE as usize),
                pages.len(),
            )
        }
    }

    /// The mapping for one zero-copy view, which stays valid (and keeps the memory) after
    /// the region is removed or the VM closed: a new mapping at an address of its own,
    /// or, for a region restored from a snapshot, the region's own mapping (see
    /// [`GuestRegion::views_share_address`]). A view can write any page at any time, so
    /// the next diff snapshot counts every page of the region as written.
    pub fn map_view(&self) -> Result<Arc<Mapping>> {
        self.written.mark_all();
        match &self.extent {
            Some(extent) => Ok(Arc::new(Mapping::new(extent, "bytes")?)),
            None => Ok(self.mapping.clone()),
        }
    }

    /// Whether a zero-copy view of the region is alive (each holds the extent or the
    /// mapping, besides the region's own hold).
    pub(crate) fn has_live_views(&self) -> bool {
        match &self.extent {
            Some(extent) => Arc::strong_count(extent) > 2,
            None => Arc::strong_count(&self.mapping) > 1,
        }
    }

    /// Whether views share the region's address (restored regions) rather than each
    /// having one of its own.
    pub fn views_share_address(&self) -> bool {
        self.extent.is_none()
    }

    /// The memory file and the offset the region starts at in it (not for restored
    /// regions), so a snapshot can skip the holes of untouched memory.
    pub(crate) fn file_range(&self) -> Option<(&File, u64)> {
        self.extent.as_ref().map(|e| (&e.file.file, e.offset))
    }

    /// The host address of the region's first byte.
    pub fn host_ptr(&self) -> *mut u8 {
        self.mapping.as_ptr()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Always false: empty regions are refused.
    pub fn is_empty(&self) -> bool {
        self.mapping.is_empty()
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
        (end <= self.len() as u64).then_some(offset as usize)
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
        self.written.mark(offset, data.len());
    }

    /// The region's memory as bytes, for a snapshot taken while no vcpu runs.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the whole mapping, live as long as `self`; the snapshot reads it while
        // every vcpu of the VM is held outside `run()`.
        unsafe { std::slice::from_raw_parts(self.host_ptr(), self.len()) }
    }
}

impl std::fmt::Debug for GuestRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRegion")
            .field("guest_address", &format_args!("{:#x}", self.guest_address))
            .field("size", &format_args!("{:#x}", self.len()))
            .field("readonly", &self.readonly)
            .finish()
    }
}
