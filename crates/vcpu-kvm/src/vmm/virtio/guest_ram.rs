//! Guest RAM as vm-memory sees it, for devices (virtio-queue works over vm-memory): the
//! VM's own mappings, nothing copied. Each region's bitmap is the region's write log,
//! so what a device writes into guest memory counts for the next diff snapshot and
//! reset, like the host's own writes; and each holds its region, whose mapping thus
//! outlives the device's use of it even if the VM is closed meanwhile.

use std::sync::Arc;

use vm_memory::bitmap::{Bitmap, RefSlice, WithBitmapSlice};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use crate::error::{Error, Result};
use crate::kvm::{GuestRegion, KvmVm};

/// A region's write log as a vm-memory bitmap (it also keeps the region mapped).
#[derive(Clone)]
pub struct WrittenPages(Arc<GuestRegion>);

impl std::fmt::Debug for WrittenPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrittenPages({:#x})", self.0.guest_address())
    }
}

impl<'a> WithBitmapSlice<'a> for WrittenPages {
    type S = RefSlice<'a, WrittenPages>;
}

impl Bitmap for WrittenPages {
    fn mark_dirty(&self, offset: usize, len: usize) {
        self.0.written.mark(offset, len);
    }

    fn dirty_at(&self, _offset: usize) -> bool {
        false
    }

    fn slice_at(&self, offset: usize) -> RefSlice<'_, WrittenPages> {
        RefSlice::new(self, offset)
    }
}

/// Guest RAM for devices.
pub type GuestRam = GuestMemoryMmap<WrittenPages>;

/// The VM's writable regions as [`GuestRam`].
pub fn guest_ram(vm: &KvmVm, op: &'static str) -> Result<GuestRam> {
    let mut regions = vm.regions();
    regions.sort_by_key(|(_, r)| r.guest_address());
    let mapped = regions
        .into_iter()
        .filter(|(_, r)| !r.readonly())
        .map(|(_, r)| {
            let (ptr, len, at) = (r.host_ptr(), r.len(), r.guest_address());
            // SAFETY: the region's mapping is live, shared and read-write, exactly this
            // size, and stays mapped while the bitmap (which holds the region) lives.
            let mmap = unsafe {
                MmapRegionBuilder::new_with_bitmap(len, WrittenPages(r))
                    .with_raw_mmap_pointer(ptr)
                    .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                    .with_mmap_flags(libc::MAP_SHARED | libc::MAP_NORESERVE)
                    .build()
            }
            .map_err(|e| Error::invalid(op, format!("guest memory: {e}")))?;
            GuestRegionMmap::new(mmap, GuestAddress(at))
                .ok_or_else(|| Error::invalid(op, "guest memory region overflows"))
        })
        .collect::<Result<Vec<_>>>()?;
    GuestMemoryMmap::from_regions(mapped).map_err(|e| Error::invalid(op, format!("guest memory: {e}")))
}
