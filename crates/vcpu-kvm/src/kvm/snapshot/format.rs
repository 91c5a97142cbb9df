//! The snapshot file, version 1 (all integers little-endian):
//!
//! ```text
//! offset 0     header, one page:
//!                0  magic "VCPUSNAP"          8  format version (u32)
//!               12  architecture (u32)       16  snapshot id (16 random bytes)
//!               32  state offset (u64)       40  state length (u64)
//!               48  file length (u64)        56  CRC-32C of the state (u32)
//!               60  CRC-32C of bytes 0..60 (u32)
//! offset 4096  guest memory, page aligned, region after region:
//!                full snapshot: each region's image, page i at image + 4096 i; pages
//!                that are all zero are holes (never written, no disk used)
//!                diff: only the written pages that are not zero, packed
//! state        the `SnapshotState` (bincode, serde): VM options, memory layout with
//!              a CRC per chunk of 2 MiB of memory data, the base a diff applies to,
//!              irqchip, PIT and clock, each vcpu's state, the VMM's own device state
//! ```
//!
//! A file is checked before anything of it is mapped: magic, version, architecture,
//! length, both header checksums, then every memory chunk (once per file and process:
//! restoring the same file again skips the read).

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::kvm::arch;
use crate::kvm::memory::PAGE_SIZE;

pub(crate) const MAGIC: [u8; 8] = *b"VCPUSNAP";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = PAGE_SIZE;
/// Pages per checksummed chunk of memory data (2 MiB).
pub(crate) const CHUNK_PAGES: usize = 512;

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 1;
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 2;

const RESTORE: &str = "restoreVm";

/// The fixed part at the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) id: [u8; 16],
    pub(crate) state_offset: u64,
    pub(crate) state_len: u64,
    pub(crate) file_len: u64,
    pub(crate) state_crc: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&ARCH.to_le_bytes());
        b[16..32].copy_from_slice(&self.id);
        b[32..40].copy_from_slice(&self.state_offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.state_len.to_le_bytes());
        b[48..56].copy_from_slice(&self.file_len.to_le_bytes());
        b[56..60].copy_from_slice(&self.state_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads and checks the header of `path` (opened as `file`, `len` bytes long).
    fn decode(b: &[u8; 64], path: &Path, len: u64) -> Result<Header> {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
        if b[0..8] != MAGIC {
            return Err(bad(path, "is not a vcpu snapshot (no VCPUSNAP magic)"));
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(
                path,
                format!("was made by another version of vcpu (snapshot format {version}; this one reads {VERSION})"),
            ));
        }
        if u32_at(12) != ARCH {
            return Err(bad(path, "was made on another architecture"));
        }
        if crc32fast::hash(&b[..60]) != u32_at(60) {
            return Err(bad(path, "is corrupt: its header checksum does not match"));
        }
        let header = Header {
            id: b[16..32].try_into().unwrap_or_default(),
            state_offset: u64_at(32),
            state_len: u64_at(40),
            file_len: u64_at(48),
            state_crc: u32_at(56),
        };
        if len < header.file_len {
            return Err(bad(path, format!("is truncated: {len} bytes of {}", header.file_len)));
        }
        if header.state_offset.checked_add(header.state_len) != Some(header.file_len) {
            return Err(bad(path, "is corrupt: its header does not describe its layout"));
        }
        Ok(header)
    }
}

/// "`restoreVm: snapshot PATH WHY`", as `EINVAL`.
pub(crate) fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid(RESTORE, format!("{RESTORE}: snapshot {} {why}", path.display()))
}

/// The VM options a restore creates the VM with.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(crate) struct SavedConfig {
    pub(crate) irqchip: bool,
    pub(crate) hypercall_port: Option<u16>,
    pub(crate) userspace_msr: bool,
}

/// The snapshot a diff applies to.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct BaseRef {
    /// Its absolute path when the diff was written.
    pub(crate) path: PathBuf,
    pub(crate) id: [u8; 16],
}

/// One memory region and where its pages are in the file.
#[derive(Serialize, Deserialize)]
pub(crate) struct SavedRegion {
    pub(crate) slot: u32,
    pub(crate) guest_address: u64,
    pub(crate) size: u64,
    pub(crate) readonly: bool,
    pub(crate) dirty_log: bool,
    pub(crate) pages: SavedPages,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum SavedPages {
    /// The whole region at `offset`; `present`: one bit per page written (the others
    /// are holes, read as zero); a CRC of the present pages of each chunk.
    Image {
        offset: u64,
        present: Vec<u64>,
        crcs: Vec<u32>,
    },
    /// A diff: the pages `written` (ascending) packed at `offset`, a CRC per chunk of
    /// them, and the pages that became zero. Every other page is the base's (the base
    /// region at the same address and size), or zero if the base has no such region.
    Packed {
        offset: u64,
        written: Vec<u32>,
        crcs: Vec<u32>,
        zero: Vec<u32>,
    },
}

/// Everything but memory data.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotState {
    pub(crate) config: SavedConfig,
    pub(crate) base: Option<BaseRef>,
    pub(crate) regions: Vec<SavedRegion>,
    pub(crate) vm: arch::VmSnapshot,
    pub(crate) vcpus: Vec<arch::VcpuSnapshot>,
    /// The VMM's own device state (a `LinuxMachine`'s serial port), opaque here.
    pub(crate) devices: Option<Vec<u8>>,
}

pub(crate) fn encode_state(state: &SnapshotState) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(state, bincode::config::standard())
        .map_err(|e| Error::invalid("snapshot", format!("cannot encode the VM state: {e}")))
}

/// An opened snapshot whose header and state passed their checks.
pub(crate) struct SnapshotFile {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) header: Header,
    pub(crate) state: SnapshotState,
}

impl SnapshotFile {
    /// Opens `path` and checks everything but memory data.
    pub(crate) fn open(path: &Path) -> Result<SnapshotFile> {
        let mut file = File::open(path).map_err(|e| {
            let code = ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO));
            Error::new(
                code,
                RESTORE,
                format!("{RESTORE}: cannot open snapshot {}: {e}", path.display()),
            )
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut head = [0u8; 64];
        if file.read_exact(&mut head).is_err() {
            return Err(bad(path, format!("is not a vcpu snapshot (only {len} bytes)")));
        }
        let header = Header::decode(&head, path, len)?;
        let state_len = usize::try_from(header.state_len).map_err(|_| bad(path, "is corrupt"))?;
        let mut raw = vec![0u8; state_len];
        file.read_exact_at(&mut raw, header.state_offset)
            .map_err(|_| bad(path, "is truncated"))?;
        if crc32fast::hash(&raw) != header.state_crc {
            return Err(bad(path, "is corrupt: the VM state's checksum does not match"));
        }
        let (state, _) = bincode::serde::decode_from_slice::<SnapshotState, _>(&raw, bincode::config::standard())
            .map_err(|e| bad(path, format!("is corrupt: {e}")))?;
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file,
            header,
            state,
        })
    }

    /// Checks every memory chunk against its CRC, and that the holes of each image hold
    /// nothing but zeros. Once per file (by inode and modification time) and process.
    pub(crate) fn verify_memory(&self) -> Result<()> {
        let key = file_key(&self.file);
        if key.is_some_and(|k| verified().contains(&k)) {
            return Ok(());
        }
        for region in &self.state.regions {
            self.verify_region(region)?;
        }
        if let Some(k) = key {
            verified().insert(k);
        }
        Ok(())
    }

    fn verify_region(&self, region: &SavedRegion) -> Result<()> {
        let pages = (region.size / PAGE_SIZE) as usize;
        let in_file = |offset: u64, n: usize| {
            offset
                .checked_add(n as u64 * PAGE_SIZE)
                .is_some_and(|end| end <= self.header.state_offset)
        };
        let corrupt = |what: &str| {
            bad(
                &self.path,
                format!("is corrupt: {what} of the region at {:#x}", region.guest_address),
            )
        };
        match &region.pages {
            SavedPages::Image { offset, present, crcs } => {
                if !in_file(*offset, pages)
                    || present.len() != pages.div_ceil(64)
                    || crcs.len() != pages.div_ceil(CHUNK_PAGES)
                {
                    return Err(corrupt("the memory layout"));
                }
                let is_present = |p: usize| present[p / 64] >> (p % 64) & 1 == 1;
                let mut buf = vec![0u8; CHUNK_PAGES * PAGE_SIZE as usize];
                for (chunk, want) in crcs.iter().enumerate() {
                    let first = chunk * CHUNK_PAGES;
                    let n = CHUNK_PAGES.min(pages - first);
                    let start = offset + first as u64 * PAGE_SIZE;
                    let data = &mut buf[..n * PAGE_SIZE as usize];
                    let mut hasher = crc32fast::Hasher::new();
                    if has_data(&self.file, start, n as u64 * PAGE_SIZE) {
                        self.file
                            .read_exact_at(data, start)
                            .map_err(|_| corrupt("unreadable memory"))?;
                        for (p, page) in data.chunks_exact(PAGE_SIZE as usize).enumerate() {
                            if is_present(first + p) {
                                hasher.update(page);
                            } else if !is_zero(page) {
                                return Err(corrupt(&format!(
                                    "data in an empty page ({:#x})",
                                    (first + p) as u64 * PAGE_SIZE
                                )));
                            }
                        }
                    }
                    if hasher.finalize() != *want {
                        return Err(corrupt(&format!("a memory checksum (chunk {chunk})")));
                    }
                }
            }
            SavedPages::Packed {
                offset,
                written,
                crcs,
                zero,
            } => {
                let ok_pages = written.iter().chain(zero).all(|&p| (p as usize) < pages);
                if !in_file(*offset, written.len()) || !ok_pages || crcs.len() != written.len().div_ceil(CHUNK_PAGES) {
                    return Err(corrupt("the memory layout"));
                }
                let mut buf = vec![0u8; CHUNK_PAGES * PAGE_SIZE as usize];
                for (chunk, want) in crcs.iter().enumerate() {
                    let n = CHUNK_PAGES.min(written.len() - chunk * CHUNK_PAGES);
                    let data = &mut buf[..n * PAGE_SIZE as usize];
                    self.file
                        .read_exact_at(data, offset + (chunk * CHUNK_PAGES) as u64 * PAGE_SIZE)
                        .map_err(|_| corrupt("unreadable memory"))?;
                    if crc32fast::hash(data) != *want {
                        return Err(corrupt(&format!("a memory checksum (chunk {chunk})")));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `file` has data (not only a hole) in `[start, start + len)`; true when the
/// file system cannot tell.
fn has_data(file: &File, start: u64, len: u64) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: lseek on a descriptor we hold; it moves only this descriptor's offset,
    // which every read here ignores (pread).
    let data = unsafe { libc::lseek(file.as_raw_fd(), start as libc::off_t, libc::SEEK_DATA) };
    if data < 0 {
        // ENXIO: no data at or after `start`; anything else: no SEEK_DATA here.
        return std::io::Error::last_os_error().raw_os_error() != Some(libc::ENXIO);
    }
    (data as u64) < start + len
}

/// Whether `page` is all zero bytes.
pub(crate) fn is_zero(page: &[u8]) -> bool {
    // SAFETY: any bit pattern is a valid u64; align_to leaves unaligned ends in the
    // outer slices, which are checked bytewise.
    let (head, words, tail) = unsafe { page.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// What identifies one version of a file: device, inode, size, modification time.
type FileKey = (u64, u64, u64, i64, i64);

fn file_key(file: &File) -> Option<FileKey> {
    let m = file.metadata().ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// Files whose memory passed its checks (or that this process wrote).
fn verified() -> std::sync::MutexGuard<'static, HashSet<FileKey>> {
    static VERIFIED: LazyLock<Mutex<HashSet<FileKey>>> = LazyLock::new(Mutex::default);
    VERIFIED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records that `file` (just written by this process) is consistent.
pub(crate) fn mark_verified(file: &File) {
    if let Some(k) = file_key(file) {
        verified().insert(k);
    }
}
