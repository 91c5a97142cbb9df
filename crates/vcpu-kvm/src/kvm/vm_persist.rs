//! The VM's side of a snapshot (Firecracker's `persist.rs` shape): what the snapshot
//! code may read from a VM while every vcpu is held ([`Frozen`]), and what it puts back
//! into a new one ([`KvmVm::restore_parts`]). The snapshot code (`snapshot/`) writes and
//! reads files only; the VM's state is changed here, by the VM.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, MutexGuard};

use super::arch::{self, VcpuSnapshot, VmSnapshot};
use super::memory::GuestRegion;
use super::snapshot::{self, BaseRef, SnapshotInfo, SnapshotOptions};
use super::vcpu::{HeldVcpu, KvmVcpu};
use super::vm::{KvmVm, VmConfig, VmState};
use super::vm_memory::fetch_dirty_log;
use super::Kvm;
use crate::error::{Error, Result};
use crate::MemSlot;

/// What a VM keeps of its last snapshot or restore.
#[derive(Default)]
pub(crate) struct Restored {
    /// The file a diff would apply to.
    pub(super) base: Option<BaseRef>,
    /// Saved vcpus that `create_vcpu` has not brought back yet.
    vcpus: BTreeMap<u32, VcpuSnapshot>,
    /// Every vcpu id the restored snapshot holds.
    ids: Vec<u32>,
    /// The VMM's device state from the restored snapshot.
    devices: Option<Vec<u8>>,
    /// What `reset()` returns to, if anything.
    pub(crate) reset: Option<super::reset::ResetPoint>,
}

impl Restored {
    /// Whether writes are being tracked (for a diff, or a reset).
    pub(crate) fn tracking(&self) -> bool {
        self.base.is_some() || self.reset.is_some()
    }

    /// The saved state of vcpu `id`, once: it is being created.
    pub(crate) fn take_vcpu(&mut self, id: u32) -> Option<VcpuSnapshot> {
        self.vcpus.remove(&id)
    }

    /// Gives back a saved vcpu whose restore failed.
    pub(crate) fn put_back(&mut self, saved: VcpuSnapshot) {
        self.vcpus.insert(saved.id, saved);
    }
}

/// One memory region as a snapshot saves it.
pub(crate) struct RegionToSave {
    pub(crate) slot: MemSlot,
    pub(crate) region: Arc<GuestRegion>,
    pub(crate) dirty_log: bool,
    /// For a diff: one bit per page written since the last snapshot or restore
    /// (`None`: all of it).
    pub(crate) written: Option<Vec<u64>>,
}

/// One memory region a restore puts back.
pub(crate) struct RegionToRestore {
    pub(crate) slot: MemSlot,
    pub(crate) region: Arc<GuestRegion>,
    pub(crate) dirty_log: bool,
}

/// What a restore gives a new VM besides memory.
pub(crate) struct RestoredParts {
    pub(crate) vm: VmSnapshot,
    pub(crate) vcpus: Vec<VcpuSnapshot>,
    pub(crate) devices: Option<Vec<u8>>,
    /// The file restored from: the base of the next diff.
    pub(crate) base: BaseRef,
}

/// A VM with every vcpu held out of `run()` and its state locked, for a snapshot.
pub(crate) struct Frozen<'a> {
    vm: &'a KvmVm,
    state: MutexGuard<'a, VmState>,
    held: Vec<HeldVcpu>,
}

impl KvmVm {
    /// Holds every vcpu out of `run()` (`EBUSY` if one runs or has an exit waiting for
    /// its handler: nothing may be half-done in a saved state) and locks the VM.
    pub(crate) fn freeze(&self, op: &'static str) -> Result<Frozen<'_>> {
        self.freeze_each(op, KvmVcpu::hold)
    }

    /// As [`KvmVm::freeze`], for a reset: an exit waiting for its handler is dropped
    /// rather than refused (the state it belongs to goes).
    pub(crate) fn freeze_dropping_exits(&self, op: &'static str) -> Result<Frozen<'_>> {
        self.freeze_each(op, KvmVcpu::hold_dropping_exit)
    }

    /// Locks the VM and holds each live vcpu with `hold`.
    fn freeze_each(
        &self,
        op: &'static str,
        hold: fn(&Arc<KvmVcpu>, &'static str) -> Result<HeldVcpu>,
    ) -> Result<Frozen<'_>> {
        let state = self.lock(op)?;
        let held = state
            .live_vcpus()
            .iter()
            .map(|v| hold(v, op))
            .collect::<Result<Vec<_>>>()?;
        Ok(Frozen { vm: self, state, held })
    }

    /// Puts a snapshot's memory, VM state and saved vcpus into this new VM (no vcpu
    /// yet); the file restored from becomes the base of the next diff.
    pub(crate) fn restore_parts(
        &self,
        regions: Vec<RegionToRestore>,
        parts: RestoredParts,
        op: &'static str,
        bad: impl Fn(&str) -> Error,
    ) -> Result<()> {
        let mut guard = self.lock(op)?;
        let state = &mut *guard;
        let max_slots = self.max_slots();
        if regions.len() > max_slots {
            return Err(bad(&format!(
                "has {} memory regions; this KVM allows {max_slots}",
                regions.len()
            )));
        }
        for r in regions {
            if state
                .memory
                .overlapping(r.region.guest_address(), r.region.len() as u64)
                .is_some()
                || r.slot as usize >= max_slots
            {
                return Err(bad("is corrupt: its memory regions overlap"));
            }
            KvmVm::insert_slot(state, r.slot, r.region, r.dirty_log, op)?;
        }
        arch::restore_vm(&self.shared.arch, state.fd(op)?, &parts.vm)?;
        // The snapshot is the reset point, when every region can drop back to the file.
        state.restored.reset =
            super::reset::ResetPoint::at_restore(state, parts.vm.clone(), parts.vcpus.clone(), parts.base.clone());
        state.restored.ids = parts.vcpus.iter().map(|v| v.id).collect();
        state.restored.vcpus = parts.vcpus.into_iter().map(|v| (v.id, v)).collect();
        state.restored.devices = parts.devices;
        start_tracking(state, parts.base, op)
    }

    /// Writes the VM to `path` (atomically: a new file renamed into place). Every vcpu
    /// must be outside `run()` with no exit waiting for its handler (else `EBUSY`); they
    /// are kept out of `run()` meanwhile. `diff`: only the pages written since the VM's
    /// previous snapshot or restore, naming that file as its base. `devices`: the VMM's
    /// own device state, given back by [`KvmVm::restored_devices`].
    pub fn snapshot(&self, path: &Path, diff: bool, devices: Option<&[u8]>) -> Result<SnapshotInfo> {
        let options = SnapshotOptions {
            diff,
            devices,
            key: None,
        };
        snapshot::save(self, path, &options)
    }

    /// [`KvmVm::snapshot`] with every option, a signing key among them.
    pub fn snapshot_with(&self, path: &Path, options: &SnapshotOptions) -> Result<SnapshotInfo> {
        snapshot::save(self, path, options)
    }

    /// The vcpu ids a restored VM's snapshot holds (empty for a VM not restored).
    pub fn snapshot_vcpu_ids(&self) -> Vec<u32> {
        self.lock("snapshotVcpuIds")
            .map(|s| s.restored.ids.clone())
            .unwrap_or_default()
    }

    /// The VMM's device state saved with the snapshot this VM was restored from.
    pub fn restored_devices(&self) -> Option<Vec<u8>> {
        self.lock("restoreVm").ok().and_then(|s| s.restored.devices.clone())
    }
}

impl Kvm {
    /// A VM restored from the snapshot at `path` (and the chain of bases of a diff):
    /// memory, irqchip, PIT and clock as saved; memory comes from the file lazily and
    /// copy-on-write (the file is never changed, and many VMs can share it). Saved vcpus
    /// come back with `create_vcpu`. A file that is not a snapshot, is truncated or
    /// corrupt, was made by another version, or whose base is missing or is not the
    /// file it was made from fails with `EINVAL` before anything of it is mapped.
    pub fn restore_vm(&self, path: &Path) -> Result<KvmVm> {
        snapshot::restore(self, path, None)
    }

    /// [`Kvm::restore_vm`] of a file signed with `key` (and its bases, with the same
    /// key): a file not signed with it is refused with `EINVAL` before its state is
    /// decoded, and memory data that does not match the signed digests before anything
    /// is mapped.
    pub fn restore_vm_with(&self, path: &Path, key: Option<&[u8]>) -> Result<KvmVm> {
        snapshot::restore(self, path, key)
    }
}

impl Frozen<'_> {
    /// The options the VM was created with.
    pub(crate) fn config(&self) -> VmConfig {
        self.vm.config()
    }

    /// The file the next diff applies to, if any.
    pub(crate) fn base(&self) -> Option<&BaseRef> {
        self.state.restored.base.as_ref()
    }

    /// The VM's own state (irqchip, PIT, clock).
    pub(crate) fn save_vm(&self, op: &'static str) -> Result<VmSnapshot> {
        arch::save_vm(&self.vm.shared().arch, self.state.fd(op)?, self.config().irqchip)
    }

    /// Every vcpu's state by id, the held ones and the restored ones not created yet.
    pub(crate) fn save_vcpus(&self) -> Result<Vec<VcpuSnapshot>> {
        let irqchip = self.config().irqchip;
        let mut saved = self
            .held
            .iter()
            .map(|v| arch::save_vcpu(v, irqchip))
            .collect::<Result<Vec<_>>>()?;
        saved.extend(self.state.restored.vcpus.values().cloned());
        saved.sort_by_key(|v| v.id);
        Ok(saved)
    }

    /// Each memory region with, for a diff, the pages written since the last snapshot
    /// or restore. KVM's dirty log is read (which clears it) and kept for the user's
    /// next `get_dirty_log` too.
    pub(crate) fn regions_to_save(&mut self, diff: bool, op: &'static str) -> Result<Vec<RegionToSave>> {
        let state = &mut *self.state;
        // The field, not `state.fd()`: `memory` is borrowed mutably next.
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(op, "VM"))?;
        let mut regions = Vec::new();
        for s in state.memory.iter_mut() {
            let guest = fetch_dirty_log(fd, s, op)?;
            if s.dirty_log {
                merge(&mut s.owed, &guest);
            }
            regions.push(RegionToSave {
                slot: s.slot,
                region: s.region.clone(),
                dirty_log: s.dirty_log,
                written: if diff { s.region.written.written() } else { None },
            });
        }
        Ok(regions)
    }

    /// The file just written becomes the base of the next diff: the logs restart while
    /// the vcpus are still held, so no guest write falls between the two.
    pub(crate) fn start_tracking(&mut self, base: BaseRef, op: &'static str) -> Result<()> {
        if let Some(reset) = self.state.restored.reset.as_mut() {
            // What the logs held still counts for the next reset.
            reset.fold_written();
        }
        start_tracking(&mut self.state, base, op)
    }

    /// Runs `f` over the VM's state (for a reset).
    pub(super) fn with_state<T>(&mut self, f: impl FnOnce(&mut VmState) -> Result<T>) -> Result<T> {
        f(&mut self.state)
    }

    /// Runs `f` for each held vcpu, with the VM's state.
    pub(super) fn restore_vcpus(&mut self, mut f: impl FnMut(&KvmVcpu, &VmState) -> Result<()>) -> Result<()> {
        for v in &self.held {
            f(v, &self.state)?;
        }
        Ok(())
    }
}

/// Makes `base` the base of the next diff: KVM logs every slot's dirty pages and each
/// region's write log starts empty. No vcpu may run meanwhile (a snapshot holds them and
/// has already taken KVM's logs; a VM being restored has none yet), so there is nothing
/// of KVM's to fetch here.
fn start_tracking(state: &mut VmState, base: BaseRef, op: &'static str) -> Result<()> {
    state.restored.base = Some(base);
    KvmVm::log_every_slot(state, op)?;
    for s in state.memory.iter() {
        s.region.written.restart(s.region.len(), s.region.has_live_views());
    }
    Ok(())
}

fn merge(into: &mut Vec<u64>, pages: &[u64]) {
    if into.len() < pages.len() {
        into.resize(pages.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(pages) {
        *a |= b;
    }
}
