//! Snapshot and restore of a whole VM, in one file (see `format`): taken while no vcpu
//! runs or has an exit half-handled, restored lazily and copy-on-write, with diffs that
//! hold only the pages written since the previous snapshot or restore.

mod format;
mod pages;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use format::{bad, encode_state, BaseRef, Header, SavedConfig, SavedRegion, SnapshotFile, SnapshotState, HEADER_LEN};
use pages::{LoadedRegion, PageWriter};

use super::arch::{self, VcpuSnapshot};
use super::memory::GuestRegion;
use super::vm::{KvmVm, VmConfig, VmState};
use super::vm_memory::fetch_dirty_log;
use super::Kvm;
use crate::error::{Error, ErrorCode, Result};

/// A diff chain longer than this is refused (it is almost certainly a loop).
const MAX_CHAIN: usize = 64;

/// What [`KvmVm::snapshot`] wrote.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotInfo {
    /// Bytes of data written: header, state and memory pages (holes not counted).
    pub bytes: u64,
    /// Guest memory pages written.
    pub pages: u64,
}

/// What a VM keeps of its last snapshot or restore.
#[derive(Default)]
pub(crate) struct Restored {
    /// The file a diff would apply to.
    base: Option<BaseRef>,
    /// Saved vcpus that `create_vcpu` has not brought back yet.
    pub(crate) vcpus: BTreeMap<u32, VcpuSnapshot>,
    /// Every vcpu id the restored snapshot holds.
    ids: Vec<u32>,
    /// The VMM's device state from the restored snapshot.
    devices: Option<Vec<u8>>,
}

impl Restored {
    /// Whether writes are being tracked for a diff.
    pub(crate) fn tracking(&self) -> bool {
        self.base.is_some()
    }
}

impl KvmVm {
    /// Writes the VM to `path` (atomically: a new file renamed into place). Every vcpu
    /// must be outside `run()` with no exit waiting for its handler (else `EBUSY`); they
    /// are kept out of `run()` meanwhile. `diff`: only the pages written since the VM's
    /// previous snapshot or restore, naming that file as its base. `devices`: the VMM's
    /// own device state, given back by [`KvmVm::restored_devices`].
    pub fn snapshot(&self, path: &Path, diff: bool, devices: Option<&[u8]>) -> Result<SnapshotInfo> {
        const OP: &str = "snapshot";
        let mut guard = self.lock(OP)?;
        let state = &mut *guard;
        let base = match (diff, &state.restored.base) {
            (false, _) => None,
            (true, Some(b)) if absolute(path).as_deref() == Some(b.path.as_path()) => {
                return Err(Error::invalid(
                    OP,
                    format!("snapshot: a diff cannot replace its own base {}", path.display()),
                ));
            }
            (true, Some(b)) => Some(b.clone()),
            (true, None) => {
                return Err(Error::invalid(
                    OP,
                    "snapshot: diff needs an earlier snapshot or restore of this VM to be a diff of",
                ));
            }
        };
        let vcpus: Vec<_> = state
            .vcpus
            .iter()
            .filter_map(|w| w.upgrade())
            .filter(|v| !v.is_closed())
            .collect();
        let held = vcpus.iter().map(|v| v.hold(OP)).collect::<Result<Vec<_>>>()?;
        let irqchip = self.shared.config.irqchip;
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        let vm = arch::save_vm(fd, irqchip)?;
        let mut saved = held
            .iter()
            .map(|v| arch::save_vcpu(v, irqchip))
            .collect::<Result<Vec<_>>>()?;
        saved.extend(state.restored.vcpus.values().cloned());
        saved.sort_by_key(|v| v.id);

        let partial = partial_path(path);
        let written = write_file(&partial, |file| {
            let mut writer = PageWriter::new(file, HEADER_LEN);
            let mut regions = Vec::new();
            for s in state.memory.iter_mut() {
                let guest = fetch_dirty_log(fd, s, OP)?;
                if s.dirty_log {
                    merge(&mut s.owed, &guest);
                }
                let pages = if diff {
                    let written = s
                        .region
                        .written
                        .written()
                        .unwrap_or_else(|| vec![u64::MAX; s.region.len().div_ceil(64)]);
                    writer.packed(&s.region, &written)?
                } else {
                    writer.image(&s.region)?
                };
                regions.push(SavedRegion {
                    slot: s.slot,
                    guest_address: s.region.guest_address(),
                    size: s.region.len() as u64,
                    readonly: s.region.readonly(),
                    dirty_log: s.dirty_log,
                    pages,
                });
            }
            let snapshot = SnapshotState {
                config: SavedConfig {
                    irqchip,
                    hypercall_port: self.shared.config.hypercall_port,
                    userspace_msr: self.shared.config.userspace_msr,
                },
                base: base.clone(),
                regions,
                vm,
                vcpus: saved,
                devices: devices.map(<[u8]>::to_vec),
            };
            let raw = encode_state(&snapshot)?;
            let header = Header {
                id: random_id()?,
                state_offset: writer.cursor,
                state_len: raw.len() as u64,
                file_len: writer.cursor + raw.len() as u64,
                state_crc: crc32fast::hash(&raw),
            };
            write_at(file, &raw, header.state_offset)?;
            write_at(file, &header.encode(), 0)?;
            file.set_len(header.file_len).map_err(|e| io_error(OP, &e))?;
            // Written whole by us: its checksums need no reading back (renaming keeps the
            // inode and modification time this is keyed by).
            format::mark_verified(file);
            let bytes = HEADER_LEN + raw.len() as u64 + writer.pages * super::memory::PAGE_SIZE;
            Ok((
                header.id,
                SnapshotInfo {
                    bytes,
                    pages: writer.pages,
                },
            ))
        });
        let (id, info) = written?;
        std::fs::rename(&partial, path).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            io_error(OP, &e)
        })?;
        // From now on this file is the base of the next diff: the logs restart while
        // the vcpus are still held, so no guest write falls between the two.
        start_tracking(state, path, id, OP)?;
        drop(held);
        Ok(info)
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
        const OP: &str = "restoreVm";
        let chain = open_chain(path)?;
        let top = chain.last().ok_or_else(|| bad(path, "is empty"))?;
        let saved = top.state.config;
        let vm = self.create_vm(VmConfig {
            irqchip: saved.irqchip,
            hypercall_port: saved.hypercall_port,
            userspace_msr: saved.userspace_msr,
        })?;
        let mut regions = Vec::new();
        for snap in &chain {
            regions = pages::load(snap, regions)?;
        }
        {
            let mut guard = vm.lock(OP)?;
            let state = &mut *guard;
            if regions.len() > vm.shared.max_slots {
                return Err(bad(
                    path,
                    format!(
                        "has {} memory regions; this KVM allows {}",
                        regions.len(),
                        vm.shared.max_slots
                    ),
                ));
            }
            for LoadedRegion {
                slot,
                guest_address,
                readonly,
                dirty_log,
                mapping,
            } in regions
            {
                if state.memory.overlapping(guest_address, mapping.len() as u64).is_some()
                    || slot as usize >= vm.shared.max_slots
                {
                    return Err(bad(path, "is corrupt: its memory regions overlap"));
                }
                let region = Arc::new(GuestRegion::restored(mapping, guest_address, readonly));
                KvmVm::insert_slot(state, slot, region, dirty_log, OP)?;
            }
            let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
            arch::restore_vm(fd, &top.state.vm)?;
            // The state is ours now: move it out of the file's record.
            let top = chain.into_iter().last().ok_or_else(|| bad(path, "is empty"))?;
            let SnapshotState { vcpus, devices, .. } = top.state;
            state.restored.ids = vcpus.iter().map(|v| v.id).collect();
            state.restored.vcpus = vcpus.into_iter().map(|v| (v.id, v)).collect();
            state.restored.devices = devices;
            start_tracking(state, &top.path, top.header.id, OP)?;
        }
        Ok(vm)
    }
}

/// The snapshot at `path` and its bases, base first, every one checked.
fn open_chain(path: &Path) -> Result<Vec<SnapshotFile>> {
    let mut chain = vec![SnapshotFile::open(path)?];
    while let Some(base) = chain.last().and_then(|s| s.state.base.clone()) {
        let diff = chain.last().map(|s| s.path.clone()).unwrap_or_default();
        if chain.len() > MAX_CHAIN {
            return Err(bad(&diff, format!("has a chain of more than {MAX_CHAIN} bases")));
        }
        let found = find_base(&diff, &base.path).ok_or_else(|| {
            bad(
                &diff,
                format!("is a diff whose base {} is missing", base.path.display()),
            )
        })?;
        let snap = SnapshotFile::open(&found)?;
        if snap.header.id != base.id {
            return Err(bad(
                &diff,
                format!(
                    "is a diff of another snapshot than {} (it was replaced)",
                    found.display()
                ),
            ));
        }
        chain.push(snap);
    }
    chain.reverse();
    for snap in &chain {
        snap.verify_memory()?;
    }
    Ok(chain)
}

/// The base `recorded` (an absolute path), or a file of its name beside the diff (the
/// two were moved together).
fn find_base(diff: &Path, recorded: &Path) -> Option<PathBuf> {
    if recorded.is_file() {
        return Some(recorded.to_path_buf());
    }
    let beside = diff.parent()?.join(recorded.file_name()?);
    beside.is_file().then_some(beside)
}

/// Makes `path` (just written or restored from, with `id`) the base of the next diff:
/// KVM logs every slot's dirty pages and each region's write log starts empty. No vcpu
/// may run meanwhile (a snapshot holds them and has already taken KVM's logs; a VM being
/// restored has none yet), so there is nothing of KVM's to fetch here.
fn start_tracking(state: &mut VmState, path: &Path, id: [u8; 16], op: &'static str) -> Result<()> {
    state.restored.base = Some(BaseRef {
        path: absolute(path).unwrap_or_else(|| path.to_path_buf()),
        id,
    });
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

/// Where the snapshot is written before it is renamed to `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    PathBuf::from(name)
}

/// Creates `path` and fills it with `fill`; removes it again if that fails.
fn write_file<T>(path: &Path, fill: impl FnOnce(&File) -> Result<T>) -> Result<T> {
    const OP: &str = "snapshot";
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| {
            let code = ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO));
            Error::new(code, OP, format!("{OP}: cannot create {}: {e}", path.display()))
        })?;
    let result = fill(&file);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn write_at(file: &File, data: &[u8], at: u64) -> Result<()> {
    file.write_all_at(data, at).map_err(|e| io_error("snapshot", &e))
}

fn io_error(op: &'static str, e: &std::io::Error) -> Error {
    let code = ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO));
    Error::new(code, op, format!("{op}: cannot write the snapshot: {e}"))
}

fn absolute(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// 16 random bytes naming one snapshot file (a diff checks its base by it).
fn random_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most `id.len()` bytes into our buffer.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        return Err(Error::errno("snapshot", libc::EIO));
    }
    Ok(id)
}
