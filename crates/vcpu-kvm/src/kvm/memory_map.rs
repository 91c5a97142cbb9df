//! A VM's memory slots, found by number and by guest address in logarithmic time, and
//! slot numbers handed out in constant time: adding KVM's maximum of slots (32 764 on
//! x86) takes as long as KVM does.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::memory::{GuestRegion, MemoryFile};
use crate::error::{Error, ErrorCode, Result};
use crate::MemSlot;

/// One memory slot.
pub(super) struct Slot {
    pub(super) slot: MemSlot,
    pub(super) region: Arc<GuestRegion>,
    /// The user asked for the dirty log (`getDirtyLog`).
    pub(super) dirty_log: bool,
    /// KVM logs dirty pages: for the user, or for the next diff snapshot.
    pub(super) logging: bool,
    /// Dirty pages a snapshot fetched from KVM that the user's next `getDirtyLog` still
    /// owes (fetching clears KVM's log).
    pub(super) owed: Vec<u64>,
}

/// The slots of a VM, and the file their memory comes from.
#[derive(Default)]
pub(super) struct MemoryMap {
    slots: BTreeMap<MemSlot, Slot>,
    /// Slot numbers by each region's first guest address.
    by_address: BTreeMap<u64, MemSlot>,
    /// Numbers given back by removed slots, reused first.
    free: Vec<MemSlot>,
    /// The lowest number never handed out.
    next: MemSlot,
    /// The VM's memory file, made with the first region.
    file: Option<Arc<MemoryFile>>,
}

impl MemoryMap {
    /// The VM's memory file.
    pub(super) fn file(&mut self, op: &'static str) -> Result<Arc<MemoryFile>> {
        if let Some(file) = &self.file {
            return Ok(file.clone());
        }
        let file = MemoryFile::new(op)?;
        self.file = Some(file.clone());
        Ok(file)
    }

    /// A slot whose region overlaps `[gpa, gpa + size)`.
    pub(super) fn overlapping(&self, gpa: u64, size: u64) -> Option<&Slot> {
        let end = gpa.saturating_add(size);
        // Only the region that starts last below `end` can reach into the range.
        let (_, slot) = self.by_address.range(..end).next_back()?;
        let s = &self.slots[slot];
        let r = &s.region;
        (r.guest_address() + r.len() as u64 > gpa).then_some(s)
    }

    /// A free slot number below `max`, or `None` when all are in use. It stays free
    /// until `insert`.
    pub(super) fn free_slot(&self, max: usize) -> Option<MemSlot> {
        self.free
            .last()
            .copied()
            .or_else(|| ((self.next as usize) < max).then_some(self.next))
    }

    /// Records `slot`: one `free_slot` gave (constant time), or any free number (a
    /// restored VM's).
    pub(super) fn insert(&mut self, slot: Slot) {
        let n = slot.slot;
        if n >= self.next {
            self.free.extend(self.next..n);
            self.next = n + 1;
        } else if let Some(i) = self.free.iter().rposition(|&f| f == n) {
            self.free.swap_remove(i);
        }
        self.by_address.insert(slot.region.guest_address(), slot.slot);
        self.slots.insert(slot.slot, slot);
    }

    /// Slot `slot`, or `ENOENT`.
    pub(super) fn get(&self, op: &'static str, slot: MemSlot) -> Result<&Slot> {
        self.slots.get(&slot).ok_or_else(|| {
            Error::new(
                ErrorCode::Errno(libc::ENOENT),
                op,
                format!("no memory region in slot {slot}"),
            )
        })
    }

    /// Takes slot `slot` out (its number becomes free).
    pub(super) fn remove(&mut self, slot: MemSlot) -> Option<Slot> {
        let s = self.slots.remove(&slot)?;
        self.by_address.remove(&s.region.guest_address());
        self.free.push(slot);
        Some(s)
    }

    /// The region holding all of `[gpa, gpa + len)`, with the offset of `gpa` in it.
    pub(super) fn containing(&self, gpa: u64, len: usize) -> Option<(Arc<GuestRegion>, usize)> {
        let (_, slot) = self.by_address.range(..=gpa).next_back()?;
        let region = &self.slots[slot].region;
        region.offset_of(gpa, len).map(|offset| (region.clone(), offset))
    }

    /// Every slot, by number.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }

    /// Every slot, by number, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.values_mut()
    }

    /// Slot `slot` to change, or `ENOENT`.
    pub(super) fn get_mut(&mut self, op: &'static str, slot: MemSlot) -> Result<&mut Slot> {
        self.get(op, slot)?;
        self.slots
            .get_mut(&slot)
            .ok_or_else(|| Error::invalid(op, "slot vanished"))
    }

    /// Drops every slot (the VM is closing; views keep their own mappings).
    pub(super) fn clear(&mut self) {
        *self = MemoryMap::default();
    }
}
