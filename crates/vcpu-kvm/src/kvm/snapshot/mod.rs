//! Snapshot and restore of a whole VM, in one file (see `format`): taken while no vcpu
//! runs or has an exit half-handled, restored lazily and copy-on-write, with diffs that
//! hold only the pages written since the previous snapshot or restore.

mod format;
mod limits;
pub(crate) mod pages;
mod sign;
mod verify;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use format::BaseRef;
use format::{bad, encode_state, Header, SavedConfig, SavedRegion, SnapshotFile, SnapshotState, HEADER_LEN, TAG_AT};
use pages::{LoadedRegion, PageWriter};

use super::memory::GuestRegion;
use super::vm::{KvmVm, VmConfig};
use super::vm_persist::{RegionToRestore, RestoredParts};
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

/// How to write a snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotOptions<'a> {
    /// Only the pages written since the VM's previous snapshot or restore, naming that
    /// file as its base.
    pub diff: bool,
    /// The VMM's own device state, given back by [`KvmVm::restored_devices`].
    pub devices: Option<&'a [u8]>,
    /// Sign the file with this key (HMAC-SHA-256): a restore with the same key refuses
    /// a file anyone without it changed. Not empty.
    pub key: Option<&'a [u8]>,
}

/// Writes `vm` to `path`; see [`KvmVm::snapshot_with`].
pub(crate) fn save(vm: &KvmVm, path: &Path, options: &SnapshotOptions) -> Result<SnapshotInfo> {
    const OP: &str = "snapshot";
    let SnapshotOptions { diff, devices, key } = *options;
    let signer = key.map(|k| format::signer(k, OP)).transpose()?;
    let mut frozen = vm.freeze(OP)?;
    let base = match (diff, frozen.base()) {
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
    let config = frozen.config();
    let vm_state = frozen.save_vm(OP)?;
    let vcpus = frozen.save_vcpus()?;
    let memory = frozen.regions_to_save(diff, OP)?;

    let partial = partial_path(path);
    let written = write_file(&partial, |file| {
        let mut writer = PageWriter::new(file, HEADER_LEN, signer.is_some());
        let mut regions = Vec::new();
        for r in &memory {
            let pages = match &r.written {
                Some(written) => writer.packed(&r.region, written)?,
                None if diff => writer.packed(&r.region, &vec![u64::MAX; r.region.len().div_ceil(64)])?,
                None => writer.image(&r.region)?,
            };
            regions.push(SavedRegion {
                slot: r.slot,
                guest_address: r.region.guest_address(),
                size: r.region.len() as u64,
                readonly: r.region.readonly(),
                dirty_log: r.dirty_log,
                pages,
            });
        }
        let snapshot = SnapshotState {
            config: SavedConfig {
                irqchip: config.irqchip,
                hypercall_port: config.hypercall_port,
                userspace_msr: config.userspace_msr,
            },
            base: base.clone(),
            regions,
            vm: vm_state,
            vcpus,
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
        let fixed = header.encode();
        write_at(file, &fixed, 0)?;
        if let Some(mut signer) = signer {
            signer.update(&fixed);
            signer.update(&raw);
            write_at(file, &signer.tag(), TAG_AT)?;
        }
        file.set_len(header.file_len).map_err(|e| io_error(OP, &e))?;
        let bytes = HEADER_LEN + raw.len() as u64 + writer.pages * super::memory::PAGE_SIZE;
        Ok((
            header.id,
            SnapshotInfo {
                bytes,
                pages: writer.pages,
            },
        ))
    });
    let (file, (id, info)) = written?;
    std::fs::rename(&partial, path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        io_error(OP, &e)
    })?;
    // Written whole by us: its checksums need no reading back (after the rename, which
    // changes the change time the check is keyed by).
    verify::mark_verified(&file, key);
    // From now on this file is the base of the next diff.
    frozen.start_tracking(base_ref(path, id), OP)?;
    Ok(info)
}

/// A VM restored from the snapshot at `path`; see [`Kvm::restore_vm_with`].
pub(crate) fn restore(kvm: &Kvm, path: &Path, key: Option<&[u8]>) -> Result<KvmVm> {
    const OP: &str = "restoreVm";
    let chain = open_chain(path, key)?;
    let top = chain.last().ok_or_else(|| bad(path, "is empty"))?;
    let saved = top.state.config;
    let vm = kvm.create_vm(VmConfig {
        irqchip: saved.irqchip,
        hypercall_port: saved.hypercall_port,
        userspace_msr: saved.userspace_msr,
    })?;
    let mut loaded = Vec::new();
    for snap in &chain {
        loaded = pages::load(snap, loaded)?;
    }
    let regions = loaded
        .into_iter()
        .map(|r: LoadedRegion| RegionToRestore {
            slot: r.slot,
            region: Arc::new(GuestRegion::restored(
                r.mapping,
                r.guest_address,
                r.readonly,
                r.from_file,
            )),
            dirty_log: r.dirty_log,
        })
        .collect();
    // The state is the VM's now: move it out of the file's record.
    let top = chain.into_iter().last().ok_or_else(|| bad(path, "is empty"))?;
    let base = base_ref(&top.path, top.header.id);
    let SnapshotState {
        vm: vm_state,
        vcpus,
        devices,
        ..
    } = top.state;
    let parts = RestoredParts {
        vm: vm_state,
        vcpus,
        devices,
        base,
    };
    vm.restore_parts(regions, parts, OP, |why| bad(path, why))?;
    Ok(vm)
}

/// The snapshot at `path` and its bases, base first, every one checked (with `key`:
/// every one signed with it).
fn open_chain(path: &Path, key: Option<&[u8]>) -> Result<Vec<SnapshotFile>> {
    let mut chain = vec![SnapshotFile::open(path, key)?];
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
        let snap = SnapshotFile::open(&found, key)?;
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

/// `path` (just written or restored from, with `id`) as the base of a later diff.
fn base_ref(path: &Path, id: [u8; 16]) -> BaseRef {
    BaseRef {
        path: absolute(path).unwrap_or_else(|| path.to_path_buf()),
        id,
    }
}

/// Where the snapshot is written before it is renamed to `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    PathBuf::from(name)
}

/// Creates `path` and fills it with `fill`; removes it again if that fails.
fn write_file<T>(path: &Path, fill: impl FnOnce(&File) -> Result<T>) -> Result<(File, T)> {
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
    match fill(&file) {
        Ok(t) => Ok((file, t)),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
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
