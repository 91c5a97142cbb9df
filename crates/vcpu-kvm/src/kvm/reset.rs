//! Reset in place: a VM returns to a reset point (marked with
//! [`KvmVm::mark_reset_point`], or the snapshot it was restored from) without a new KVM
//! VM. Only the pages written since are touched (KVM's dirty log and the host's writes):
//! each is copied back from what the reset point kept of it, or dropped (a restored
//! region's page comes back from the snapshot file, a memory-file page reads as zero).
//! The VM's irqchip and PIT and every saved vcpu's state come back too (its CPUID and
//! the VM's clock cannot change or run on).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::arch::{self, VcpuSnapshot, VmSnapshot};
use super::memory::{GuestRegion, PAGE_SIZE};
use super::snapshot::pages::candidate_pages;
use super::snapshot::BaseRef;
use super::vm::{KvmVm, VmState};
use super::vm_memory::fetch_dirty_log;
use crate::error::{Error, ErrorCode, Result};
use crate::{MemSlot, Vcpu};

const PAGE: usize = PAGE_SIZE as usize;

/// What a reset returns to.
pub(crate) struct ResetPoint {
    vm: VmSnapshot,
    vcpus: Vec<VcpuSnapshot>,
    regions: Vec<RegionPoint>,
    /// The snapshot whose memory the reset point is, if any: after a reset it is the
    /// base of the next diff again; otherwise a reset leaves no base (a diff of the
    /// last snapshot would be wrong).
    base: Option<BaseRef>,
}

/// One region at the reset point.
struct RegionPoint {
    slot: MemSlot,
    region: Arc<GuestRegion>,
    /// The pages a drop would not bring back, as they were: page number → bytes.
    kept: BTreeMap<usize, Box<[u8]>>,
    /// Pages written since that a snapshot's restart of the write log took out of it.
    folded: Vec<u64>,
}

impl ResetPoint {
    /// The reset point of a VM restored from a full snapshot: the snapshot itself (every
    /// page comes back from the file). `None` if a region cannot (a diff's).
    pub(crate) fn at_restore(
        state: &VmState,
        vm: VmSnapshot,
        vcpus: Vec<VcpuSnapshot>,
        base: BaseRef,
    ) -> Option<ResetPoint> {
        let regions = state
            .memory
            .iter()
            .map(|s| {
                s.region.revertible().then(|| RegionPoint {
                    slot: s.slot,
                    region: s.region.clone(),
                    kept: BTreeMap::new(),
                    folded: Vec::new(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ResetPoint {
            vm,
            vcpus,
            regions,
            base: Some(base),
        })
    }

    /// Before the write logs restart (a snapshot): what they hold still counts for the
    /// next reset.
    pub(crate) fn fold_written(&mut self) {
        for r in &mut self.regions {
            if let Some(written) = r.region.written.written() {
                merge(&mut r.folded, &written);
            }
        }
    }
}

fn merge(into: &mut Vec<u64>, pages: &[u64]) {
    if into.len() < pages.len() {
        into.resize(pages.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(pages) {
        *a |= b;
    }
}

fn unsupported(op: &'static str, why: &str) -> Error {
    Error::new(ErrorCode::Errno(libc::ENOTSUP), op, format!("{op}: {why}"))
}

impl KvmVm {
    /// Marks the VM as it is now as its reset point: guest memory, the VM's devices and
    /// every vcpu's state (each vcpu out of `run()`, no exit waiting, else `EBUSY`). Keeps
    /// a copy of every page of guest memory that holds data (a sparse guest keeps
    /// little). `ENOTSUP` for a region restored from a diff snapshot.
    pub fn mark_reset_point(&self) -> Result<()> {
        const OP: &str = "markResetPoint";
        let mut frozen = self.freeze(OP)?;
        let vm = frozen.save_vm(OP)?;
        let vcpus = frozen.save_vcpus()?;
        frozen.with_state(|state| {
            let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
            // What differs from the file since an earlier reset point (the restore, or an
            // earlier mark) is known to it: its kept pages, and the pages written before
            // a snapshot restarted the logs.
            let earlier = state.restored.reset.take();
            let mut regions = Vec::new();
            for s in state.memory.iter_mut() {
                if !s.region.revertible() {
                    return Err(unsupported(
                        OP,
                        "a region restored from a diff snapshot cannot be reset yet",
                    ));
                }
                // KVM's log of the guest's writes joins the host's in the region's log.
                fetch_dirty_log(fd, s, OP)?;
                let region = &s.region;
                let mem = region.as_slice();
                // A memory-file page drops to zero: every page with data is kept. A
                // restored page drops back to the file: the pages written since the
                // restore are kept.
                let candidates: Vec<usize> = match region.file_range() {
                    Some(_) => candidate_pages(region).into_iter().flatten().collect(),
                    None => {
                        let mut written = region.written.written().unwrap_or_default();
                        let before = earlier
                            .as_ref()
                            .and_then(|e| e.regions.iter().find(|r| Arc::ptr_eq(&r.region, region)));
                        if let Some(before) = before {
                            merge(&mut written, &before.folded);
                            for &p in before.kept.keys() {
                                merge(&mut written, &page_bit(p));
                            }
                        }
                        bits(&written)
                    }
                };
                let mut kept = BTreeMap::new();
                for p in candidates {
                    let data = &mem[p * PAGE..(p + 1) * PAGE];
                    if region.file_range().is_some() && data.iter().all(|&b| b == 0) {
                        continue;
                    }
                    kept.insert(p, Box::<[u8]>::from(data));
                }
                regions.push(RegionPoint {
                    slot: s.slot,
                    region: region.clone(),
                    kept,
                    folded: Vec::new(),
                });
            }
            state.restored.reset = Some(ResetPoint {
                vm,
                vcpus,
                regions,
                base: None,
            });
            restart_logs(state, OP)
        })
    }

    /// Returns the VM to its reset point ([`KvmVm::mark_reset_point`], or the snapshot
    /// it was restored from): only the pages written since are put back. Every vcpu must
    /// be out of `run()` (else `EBUSY`); an exit waiting for its handler is dropped.
    /// Vcpus created after the reset point keep their state. `EINVAL` for a VM without
    /// a reset point, or whose memory layout changed since.
    pub fn reset(&self) -> Result<()> {
        const OP: &str = "reset";
        let mut frozen = self.freeze_dropping_exits(OP)?;
        frozen.with_state(|state| {
            let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
            let Some(point) = state.restored.reset.as_mut() else {
                return Err(Error::invalid(
                    OP,
                    "reset: this VM has no reset point (markResetPoint, or restore it from a snapshot)",
                ));
            };
            if point.regions.len() != state.memory.iter().count()
                || point.regions.iter().any(|r| {
                    !state
                        .memory
                        .iter()
                        .any(|s| s.slot == r.slot && Arc::ptr_eq(&s.region, &r.region))
                })
            {
                return Err(Error::invalid(
                    OP,
                    "reset: the memory layout changed since the reset point",
                ));
            }
            for s in state.memory.iter_mut() {
                // KVM's log of the guest's writes joins the host's in the region's log.
                fetch_dirty_log(fd, s, OP)?;
            }
            for r in &mut point.regions {
                let mut written = r.region.written.written().unwrap_or_default();
                merge(&mut written, &r.folded);
                r.folded.clear();
                put_back(r, &bits(&written));
            }
            arch::reset_vm(&self.shared.arch, fd, &point.vm)?;
            state.restored.base = point.base.clone();
            Ok(())
        })?;
        frozen.restore_vcpus(|vcpu, state| {
            let saved = state
                .restored
                .reset
                .as_ref()
                .and_then(|p| p.vcpus.iter().find(|v| v.id as usize == vcpu.id()));
            match saved {
                Some(saved) => arch::reset_vcpu(vcpu, saved),
                None => Ok(()),
            }
        })?;
        frozen.with_state(|state| restart_logs(state, OP))
    }

    /// Whether the VM has a reset point.
    pub fn has_reset_point(&self) -> bool {
        self.lock("reset").is_ok_and(|s| s.restored.reset.is_some())
    }
}

/// Up to this many pages, a reset writes pages back rather than dropping them: they
/// stay mapped in the host and in KVM, so the guest's next touches do not fault (on a
/// nested KVM each such fault costs more than a whole small reset), and at most this
/// many pages stay the VM's own memory.
const REWRITE_MAX: usize = 64;

/// Puts back `pages` of `r`: the kept ones copied, the others dropped (or, for a few,
/// rewritten); runs of pages each in one call.
fn put_back(r: &RegionPoint, pages: &[usize]) {
    if pages.len() <= REWRITE_MAX {
        for &p in pages {
            match r.kept.get(&p) {
                Some(data) => r.region.put_pages(p, data),
                None => r.region.rewrite_page(p),
            }
        }
        return;
    }
    let mut i = 0;
    while i < pages.len() {
        let first = pages[i];
        let mut n = 1;
        while i + n < pages.len() && pages[i + n] == first + n {
            n += 1;
        }
        // Drop the whole run, then copy the kept pages of it back.
        r.region.drop_pages(first, n);
        for (&p, data) in r.kept.range(first..first + n) {
            r.region.put_pages(p, data);
        }
        i += n;
    }
}

/// A bitmap with page `p`'s bit set.
fn page_bit(p: usize) -> Vec<u64> {
    let mut words = vec![0; p / 64 + 1];
    words[p / 64] = 1 << (p % 64);
    words
}

/// The page numbers whose bits are set.
fn bits(words: &[u64]) -> Vec<usize> {
    let mut pages = Vec::new();
    for (w, &word) in words.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            pages.push(w * 64 + rest.trailing_zeros() as usize);
            rest &= rest - 1;
        }
    }
    pages
}

/// KVM logs every slot's dirty pages and each region's write log starts empty: what is
/// written from now on is what the next reset puts back.
fn restart_logs(state: &mut VmState, op: &'static str) -> Result<()> {
    KvmVm::log_every_slot(state, op)?;
    for s in state.memory.iter() {
        s.region.written.restart(s.region.len(), s.region.has_live_views());
    }
    Ok(())
}
