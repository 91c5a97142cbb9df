//! A VM's guest memory: adding and removing regions (KVM memory slots), bounds-checked
//! copies in and out, and the dirty log.

use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::Cap;

use super::memory::{GuestRegion, PAGE_SIZE};
use super::memory_map::Slot;
use super::vm::{KvmVm, MAX_GUEST_ADDRESS_BITS};
use crate::error::{Context, Error, ErrorCode, Result};
use crate::MemSlot;

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
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        if readonly && !fd.check_extension(Cap::ReadonlyMem) {
            return Err(Error::new(
                ErrorCode::Errno(libc::ENOTSUP),
                OP,
                "this KVM has no read-only memory (KVM_CAP_READONLY_MEM)",
            ));
        }
        let region = Arc::new(GuestRegion::new(&file, guest_address, size, readonly)?);
        let mut flags = 0;
        if readonly {
            flags |= KVM_MEM_READONLY;
        }
        if dirty_log {
            flags |= KVM_MEM_LOG_DIRTY_PAGES;
        }
        let mem = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: guest_address,
            memory_size: size as u64,
            userspace_addr: region.host_ptr() as u64,
        };
        // SAFETY: the host range is our own live mapping of exactly `size` bytes, and the
        // slot holds an Arc to it, so it stays mapped until the slot is removed from KVM.
        unsafe { fd.set_user_memory_region(mem) }.op(OP)?;
        state.memory.insert(Slot {
            slot,
            region: region.clone(),
            dirty_log,
        });
        Ok((slot, region))
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
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
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

    /// A copy of `len` bytes of guest memory at `gpa` (checked before allocating).
    pub fn read_vec(&self, gpa: u64, len: usize) -> Result<Vec<u8>> {
        let (region, offset) = self.region_at("read", gpa, len)?;
        let mut buf = vec![0; len];
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
        let state = self.lock(OP)?;
        let s = state.memory.get(OP, slot)?;
        if !s.dirty_log {
            return Err(Error::invalid(OP, format!("slot {slot} was added without dirtyLog")));
        }
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        fd.get_dirty_log(slot, s.region.len()).op(OP)
    }
}
