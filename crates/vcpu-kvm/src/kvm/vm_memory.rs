//! A VM's guest memory: adding and removing regions (KVM memory slots), bounds-checked
//! copies in and out, and the dirty log.

use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::Cap;

use super::memory::{GuestRegion, PAGE_SIZE};
use super::memory_map::Slot;
use super::vm::{KvmVm, VmState, MAX_GUEST_ADDRESS_BITS};
use crate::error::{Context, Error, ErrorCode, Result};
use crate::MemSlot;

/// The most one copy out of guest memory ([`KvmVm::read_vec`]: `vm.read`, a
/// hypercall's `readBuffer`) may hold: 1 GiB. Larger reads go in pieces, or through a
/// view of the region, which copies nothing.
pub const MAX_COPY: usize = 1 << 30;

impl KvmVm {
    /// The slot of each region with whether it logs dirty pages.
    pub fn slots(&self) -> Vec<(MemSlot, Arc<GuestRegion>, bool)> {
        match self.lock("memory") {
            Ok(state) => state
                .memory
                .iter()
                .map(|s| (s.slot, s.region.clone(), s.dirty_log))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Maps `size` bytes of fresh zeroed RAM at guest physical `guest_address`.
    /// Both must be page aligned, the range must not overlap another slot and must end
    /// below 2^52. `readonly`: guest writes become `Mmio` exits and leave memory as it
    /// is. `dirty_log`: pages the guest writes are recorded for [`KvmVm::get_dirty_log`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, VmConfig};
    /// let vm = Kvm::open(None)?.create_vm(VmConfig::default())?;
    /// let (_slot, ram) = vm.add_memory(0, 2 << 20, false, false)?;
    /// assert_eq!(ram.len(), 2 << 20);
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn add_memory(
        &self,
        guest_address: u64,
        size: usize,
        readonly: bool,
        dirty_log: bool,
    ) -> Result<(MemSlot, Arc<GuestRegion>)> {
        const OP: &str = "addMemory";
        if size == 0 || !(size as u64).is_multiple_of(PAGE_SIZE) {
            return Err(Error::invalid(
                OP,
                format!("size {size:#x} must be a non-zero multiple of {PAGE_SIZE:#x} (the page size)"),
            ));
        }
        if !guest_address.is_multiple_of(PAGE_SIZE) {
            return Err(Error::invalid(
                OP,
                format!("guestAddress {guest_address:#x} must be a multiple of {PAGE_SIZE:#x} (the page size)"),
            ));
        }
        let end = guest_address.checked_add(size as u64);
        if end.is_none_or(|end| end > 1u64 << MAX_GUEST_ADDRESS_BITS) {
            return Err(Error::invalid(OP, format!("[{guest_address:#x}, +{size:#x}) goes past the {MAX_GUEST_ADDRESS_BITS}-bit guest physical address space")));
        }
        let mut state = self.lock(OP)?;
        if let Some(other) = state.memory.overlapping(guest_address, size as u64) {
            let r = &other.region;
            return Err(Error::new(
                ErrorCode::Errno(libc::EEXIST),
                OP,
                format!(
                    "[{guest_address:#x}, +{size:#x}) overlaps the region at [{:#x}, +{:#x})",
                    r.guest_address(),
                    r.len()
                ),
            ));
        }
        let slot = state.memory.free_slot(self.shared.max_slots).ok_or_else(|| {
            Error::new(
                ErrorCode::Errno(libc::ENOSPC),
                OP,
                format!("all {} memory slots are in use", self.shared.max_slots),
            )
        })?;
        let file = state.memory.file(OP)?;
        let fd = state.fd(OP)?;
        if readonly && !fd.check_extension(Cap::ReadonlyMem) {
            return Err(Error::new(
                ErrorCode::Errno(libc::ENOTSUP),
                OP,
                "this KVM has no read-only memory (KVM_CAP_READONLY_MEM)",
            ));
        }
        let region = Arc::new(GuestRegion::new(&file, guest_address, size, readonly)?);
        if state.restored.tracking() {
            // Not in the last snapshot: the next diff holds all of it.
            region.written.restart(size, true);
        }
        Self::insert_slot(&mut state, slot, region.clone(), dirty_log, OP)?;
        Ok((slot, region))
    }

    /// Gives `region` to KVM as `slot` and records it. KVM logs its dirty pages if the
    /// user asked (`dirty_log`) or a diff snapshot will need them.
    pub(super) fn insert_slot(
        state: &mut VmState,
        slot: MemSlot,
        region: Arc<GuestRegion>,
        dirty_log: bool,
        op: &'static str,
    ) -> Result<()> {
        let logging = dirty_log || state.restored.tracking();
        let fd = state.fd(op)?;
        // SAFETY: the host range is the region's own live mapping of its whole size, and
        // the slot holds an Arc to the region, so it stays mapped until the slot is
        // removed from KVM.
        unsafe { fd.set_user_memory_region(slot_region(slot, &region, logging)) }.op(op)?;
        state.memory.insert(Slot {
            slot,
            region,
            dirty_log,
            logging,
            owed: Vec::new(),
        });
        Ok(())
    }

    /// Turns on KVM's dirty log for every slot (a diff snapshot needs it from now on).
    pub(super) fn log_every_slot(state: &mut VmState, op: &'static str) -> Result<()> {
        // The field, not `state.fd()`: `memory` is borrowed mutably next.
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(op, "VM"))?;
        for s in state.memory.iter_mut().filter(|s| !s.logging) {
            // SAFETY: the same live mapping the slot already has; only the flags change.
            unsafe { fd.set_user_memory_region(slot_region(s.slot, &s.region, true)) }.op(op)?;
            s.logging = true;
        }
        Ok(())
    }

    /// Removes a slot from the guest: accesses there become `Mmio` exits. The host
    /// mapping is freed once no view of it remains.
    pub fn remove_memory(&self, slot: MemSlot) -> Result<()> {
        const OP: &str = "removeMemory";
        let mut state = self.lock(OP)?;
        let region = &state.memory.get(OP, slot)?.region;
        let mem = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.guest_address(),
            memory_size: 0,
            userspace_addr: region.host_ptr() as u64,
        };
        let fd = state.fd(OP)?;
        // SAFETY: size 0 deletes the slot; KVM stops using the host range before return.
        unsafe { fd.set_user_memory_region(mem) }.op(OP)?;
        state.memory.remove(slot);
        Ok(())
    }

    /// The memory regions, by slot.
    pub fn regions(&self) -> Vec<(MemSlot, Arc<GuestRegion>)> {
        match self.lock("regions") {
            Ok(state) => state.memory.iter().map(|s| (s.slot, s.region.clone())).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn region_at(&self, op: &'static str, gpa: u64, len: usize) -> Result<(Arc<GuestRegion>, usize)> {
        let state = self.lock(op)?;
        state.memory.containing(gpa, len).ok_or_else(|| {
            Error::new(
                ErrorCode::Errno(libc::EFAULT),
                op,
                format!("[{gpa:#x}, +{len:#x}) is not inside one memory region"),
            )
        })
    }

    /// Copies guest memory at `gpa` into `buf`; the range must lie inside one region.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let (region, offset) = self.region_at("read", gpa, buf.len())?;
        region.read_at(offset, buf);
        Ok(())
    }

    /// A copy of `len` bytes of guest memory at `gpa`. The length is checked before
    /// anything is allocated (it may come from the guest: a hypercall's buffer): longer
    /// than any region could be is `EINVAL`; not inside one region, `EFAULT`; more than
    /// [`MAX_COPY`], `EINVAL`; and an allocation the host refuses is `ENOMEM`, never an
    /// abort.
    pub fn read_vec(&self, gpa: u64, len: usize) -> Result<Vec<u8>> {
        const OP: &str = "read";
        if len as u64 > 1 << MAX_GUEST_ADDRESS_BITS {
            return Err(Error::invalid(
                OP,
                format!("read: length {len:#x} is more than any region could hold"),
            ));
        }
        let (region, offset) = self.region_at(OP, gpa, len)?;
        if len > MAX_COPY {
            return Err(Error::invalid(
                OP,
                format!("read: length {len:#x} is more than one copy may hold ({MAX_COPY:#x} bytes); read in pieces, or use a view of the region"),
            ));
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(len).map_err(|_| {
            Error::new(
                ErrorCode::Errno(libc::ENOMEM),
                OP,
                format!("read: cannot allocate {len:#x} bytes for the copy"),
            )
        })?;
        buf.resize(len, 0);
        region.read_at(offset, &mut buf);
        Ok(buf)
    }

    /// Copies `data` into guest memory at `gpa`; the range must lie inside one region.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, VmConfig};
    /// # let vm = Kvm::open(None)?.create_vm(VmConfig::default())?;
    /// vm.add_memory(0, 2 << 20, false, false)?;
    /// vm.write(0x1000, &[0xf4])?; // hlt
    /// let mut byte = [0u8];
    /// vm.read(0x1000, &mut byte)?;
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<()> {
        let (region, offset) = self.region_at("write", gpa, data.len())?;
        region.write_at(offset, data);
        Ok(())
    }

    /// The pages of `slot` written since the last call, one bit per page.
    pub fn get_dirty_log(&self, slot: MemSlot) -> Result<Vec<u64>> {
        const OP: &str = "getDirtyLog";
        let mut guard = self.lock(OP)?;
        let state = &mut *guard;
        // The field, not `state.fd()`: `memory` is borrowed mutably next.
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        let s = state.memory.get_mut(OP, slot)?;
        if !s.dirty_log {
            return Err(Error::invalid(OP, format!("slot {slot} was added without dirtyLog")));
        }
        let mut pages = fetch_dirty_log(fd, s, OP)?;
        for (p, owed) in pages.iter_mut().zip(std::mem::take(&mut s.owed)) {
            *p |= owed;
        }
        Ok(pages)
    }
}

/// KVM's dirty log of `s` (reading clears it), which two readers share: the user's
/// `getDirtyLog` and the next diff snapshot (the region's write log keeps its part).
pub(super) fn fetch_dirty_log(fd: &kvm_ioctls::VmFd, s: &mut Slot, op: &'static str) -> Result<Vec<u64>> {
    if !s.logging {
        return Ok(Vec::new());
    }
    let pages = fd.get_dirty_log(s.slot, s.region.len()).op(op)?;
    s.region.written.add(&pages);
    Ok(pages)
}

fn slot_region(slot: MemSlot, region: &GuestRegion, logging: bool) -> kvm_userspace_memory_region {
    let mut flags = 0;
    if region.readonly() {
        flags |= KVM_MEM_READONLY;
    }
    if logging {
        flags |= KVM_MEM_LOG_DIRTY_PAGES;
    }
    kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr: region.guest_address(),
        memory_size: region.len() as u64,
        userspace_addr: region.host_ptr() as u64,
    }
}
