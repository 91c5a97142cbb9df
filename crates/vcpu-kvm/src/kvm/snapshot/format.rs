//! The snapshot file, version 2 (all integers little-endian):
//!
//! ```text
//! offset 0     header, one page:
//!                0  magic "VCPUSNAP"          8  format version (u32)
//!               12  architecture (u32)       16  snapshot id (16 random bytes)
//!               32  state offset (u64)       40  state length (u64)
//!               48  file length (u64)        56  CRC-32 of the state (u32)
//!               60  CRC-32 of bytes 0..60 (u32)
//!               64  signed files: HMAC-SHA-256 of bytes 0..64 and the state (32
//!                   bytes); zero otherwise
//! offset 4096  guest memory, page aligned, region after region:
//!                full snapshot: each region's image, page i at image + 4096 i; pages
//!                that are all zero are holes (never written, no disk used)
//!                diff: only the written pages that are not zero, packed
//! state        the `SnapshotState` (bincode, serde): VM options, memory layout with
//!              a CRC (signed files: and a SHA-256) per chunk of 2 MiB of memory
//!              data, the base a diff applies to,
//!              irqchip, PIT and clock, each vcpu's state, the VMM's own device state
//! ```
//!
//! A file is checked before anything of it is mapped: magic, version, architecture,
//! length, the tag when a key is given (before the state is decoded), both header
//! checksums, every length the state claims (within what the file holds), then every
//! memory chunk (once per file, key and process: restoring the same file again skips the
//! read).

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

use super::sign::{digest, key_id, ChunkHasher, Digest32, Signer};

pub(crate) const MAGIC: [u8; 8] = *b"VCPUSNAP";
pub(crate) const VERSION: u32 = 2;
pub(crate) const HEADER_LEN: u64 = PAGE_SIZE;
/// Pages per checksummed chunk of memory data (2 MiB).
pub(crate) const CHUNK_PAGES: usize = 512;
/// The largest state a file may declare: 64 MiB, enough for about 2 TiB of guest memory
/// (one bit per page) and the VMM's device state. A file declaring more is refused
/// before anything of it is read.
pub(crate) const MAX_STATE_LEN: u64 = 64 << 20;

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

/// Where a signed file's tag is.
pub(crate) const TAG_AT: u64 = 64;

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

    /// Reads and checks the header of `path` (`len` bytes long).
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
        if header.state_len > MAX_STATE_LEN {
            return Err(bad(
                path,
                format!(
                    "is corrupt: its header's state length is {} bytes (at most {MAX_STATE_LEN})",
                    header.state_len
                ),
            ));
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
        /// Signed files: the SHA-256 of each chunk's present pages (empty otherwise).
        digests: Vec<Digest32>,
    },
    /// A diff: the pages `written` (ascending) packed at `offset`, a CRC per chunk of
    /// them, and the pages that became zero. Every other page is the base's (the base
    /// region at the same address and size), or zero if the base has no such region.
    Packed {
        offset: u64,
        written: Vec<u32>,
        crcs: Vec<u32>,
        /// Signed files: the SHA-256 of each chunk (empty otherwise).
        digests: Vec<Digest32>,
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
    /// The key's fingerprint when it was opened with one (memory is then checked
    /// against the digests too).
    key_id: Option<Digest32>,
}

impl SnapshotFile {
    /// Opens `path` and checks everything but memory data; with `key`, first that the
    /// file is signed with it.
    pub(crate) fn open(path: &Path, key: Option<&[u8]>) -> Result<SnapshotFile> {
        let mut file = File::open(path).map_err(|e| {
            let code = ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO));
            Error::new(
                code,
                RESTORE,
                format!("{RESTORE}: cannot open snapshot {}: {e}", path.display()),
            )
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut head = [0u8; 96];
        if file.read_exact(&mut head).is_err() {
            return Err(bad(path, format!("is not a vcpu snapshot (only {len} bytes)")));
        }
        let fixed: &[u8; 64] = head[..64].try_into().unwrap_or(&[0; 64]);
        let header = Header::decode(fixed, path, len)?;
        let signer = match key {
            None => None,
            Some(key) => Some(signer(key, RESTORE)?),
        };
        // The state is read a chunk at a time for its checks: a forged header costs no
        // memory to refuse, and a signed file's state is not decoded unless its tag holds.
        let (crc, tag) = scan_state(&file, &header, fixed, signer).map_err(|_| bad(path, "is truncated"))?;
        if let Some(tag) = tag {
            let stored: Digest32 = head[64..96].try_into().unwrap_or_default();
            if stored == [0; 32] {
                return Err(bad(path, "is not signed, and a key was given"));
            }
            if !tag.verify(&stored) {
                return Err(bad(
                    path,
                    "fails its signature check (another key, or the file was changed)",
                ));
            }
        }
        if crc != header.state_crc {
            return Err(bad(path, "is corrupt: the VM state's checksum does not match"));
        }
        let mut raw = vec![0u8; header.state_len as usize]; // at most MAX_STATE_LEN
        file.read_exact_at(&mut raw, header.state_offset)
            .map_err(|_| bad(path, "is truncated"))?;
        let state = decode_state(&raw).map_err(|e| bad(path, format!("is corrupt: {e}")))?;
        check_state(&state).map_err(|why| bad(path, format!("is corrupt: {why}")))?;
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file,
            header,
            state,
            key_id: key.map(key_id),
        })
    }

    /// Checks every memory chunk against its CRC (and, opened with a key, its
    /// SHA-256), and that the holes of each image hold nothing but zeros. Once per file
    /// (its identity, see [`FileKey`]), key and process.
    pub(crate) fn verify_memory(&self) -> Result<()> {
        let id = file_key(&self.file).map(|f| (f, self.key_id));
        if id.is_some_and(|k| verified().contains(&k)) {
            return Ok(());
        }
        for region in &self.state.regions {
            self.verify_region(region)?;
        }
        if let Some((f, key)) = id {
            let mut set = verified();
            set.insert((f, key));
            set.insert((f, None));
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
            SavedPages::Image {
                offset,
                present,
                crcs,
                digests,
            } => {
                if !in_file(*offset, pages)
                    || present.len() != pages.div_ceil(64)
                    || crcs.len() != pages.div_ceil(CHUNK_PAGES)
                    || (self.key_id.is_some() && digests.len() != crcs.len())
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
                    let mut sha = self.key_id.map(|_| ChunkHasher::new());
                    if has_data(&self.file, start, n as u64 * PAGE_SIZE) {
                        self.file
                            .read_exact_at(data, start)
                            .map_err(|_| corrupt("unreadable memory"))?;
                        for (p, page) in data.chunks_exact(PAGE_SIZE as usize).enumerate() {
                            if is_present(first + p) {
                                hasher.update(page);
                                if let Some(sha) = &mut sha {
                                    sha.update(page);
                                }
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
                    if sha.is_some_and(|sha| !sha.matches(&digests[chunk])) {
                        return Err(self.forged(region, chunk));
                    }
                }
            }
            SavedPages::Packed {
                offset,
                written,
                crcs,
                digests,
                zero,
            } => {
                let ok_pages = written.iter().chain(zero).all(|&p| (p as usize) < pages);
                if !in_file(*offset, written.len())
                    || !ok_pages
                    || crcs.len() != written.len().div_ceil(CHUNK_PAGES)
                    || (self.key_id.is_some() && digests.len() != crcs.len())
                {
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
                    if self.key_id.is_some() && digest(data) != digests[chunk] {
                        return Err(self.forged(region, chunk));
                    }
                }
            }
        }
        Ok(())
    }

    /// A chunk whose data is not what the signed state says.
    fn forged(&self, region: &SavedRegion, chunk: usize) -> Error {
        bad(
            &self.path,
            format!(
                "fails its signature check: chunk {chunk} of the region at {:#x} was changed",
                region.guest_address
            ),
        )
    }
}

/// The HMAC for `key`, or `EINVAL` for an empty key.
pub(crate) fn signer(key: &[u8], op: &'static str) -> Result<Signer> {
    Signer::new(key).ok_or_else(|| Error::invalid(op, format!("{op}: key must not be empty")))
}

/// Reads the state `header` places in `file` 1 MiB at a time: its CRC-32 and, with
/// `signer`, the HMAC of the header's first 64 bytes (`fixed`) and the state.
fn scan_state(
    file: &File,
    header: &Header,
    fixed: &[u8; 64],
    mut signer: Option<Signer>,
) -> std::io::Result<(u32, Option<Signer>)> {
    let mut crc = crc32fast::Hasher::new();
    if let Some(s) = &mut signer {
        s.update(fixed);
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut at = header.state_offset;
    while at < header.file_len {
        let n = buf.len().min((header.file_len - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        crc.update(&buf[..n]);
        if let Some(s) = &mut signer {
            s.update(&buf[..n]);
        }
        at += n as u64;
    }
    Ok((crc.finalize(), signer))
}

/// The state, decoded within bincode's configured limit on what its lengths may claim.
/// The limit is a constant: the smallest class that holds eight times the encoded state
/// (each element of a vector takes at least one byte encoded, at most eight in memory),
/// so what the decoder allocates stays in proportion to the file.
fn decode_state(raw: &[u8]) -> std::result::Result<SnapshotState, bincode::error::DecodeError> {
    use bincode::config::standard;
    const MIB: usize = 1 << 20;
    let decoded = match raw.len() {
        0..=MIB => bincode::serde::decode_from_slice(raw, standard().with_limit::<{ 8 * MIB }>()),
        n if n <= 8 * MIB => bincode::serde::decode_from_slice(raw, standard().with_limit::<{ 64 * MIB }>()),
        _ => bincode::serde::decode_from_slice(raw, standard().with_limit::<{ 8 * MAX_STATE_LEN as usize }>()),
    };
    decoded.map(|(state, _)| state)
}

/// What the state says, checked before any of it is used: each region's size and place,
/// all of guest memory against what this host could hold, and the VM and vcpu state.
fn check_state(state: &SnapshotState) -> std::result::Result<(), String> {
    let mut total: u64 = 0;
    for r in &state.regions {
        let end = r.guest_address.checked_add(r.size);
        if r.size == 0
            || !r.size.is_multiple_of(PAGE_SIZE)
            || !r.guest_address.is_multiple_of(PAGE_SIZE)
            || end.is_none_or(|end| end > 1 << crate::kvm::MAX_GUEST_ADDRESS_BITS)
        {
            return Err(format!(
                "a region's guest address {:#x} and size {:#x} are not a page-aligned range of guest memory",
                r.guest_address, r.size
            ));
        }
        total = total.saturating_add(r.size);
    }
    let host = host_memory();
    if total > host {
        return Err(format!(
            "its regions' sizes add up to {total:#x} bytes of guest memory, more than this host has ({host:#x} bytes of RAM and swap)"
        ));
    }
    state.vm.check(state.config.irqchip)?;
    for v in &state.vcpus {
        v.check()?;
    }
    Ok(())
}

/// The host's RAM and swap, in bytes (what guest memory restored from a file must fit).
fn host_memory() -> u64 {
    // SAFETY: sysinfo fills the struct we pass, nothing else.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: as above; a valid pointer to our own struct.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return u64::MAX;
    }
    let unit = u64::from(info.mem_unit.max(1));
    (info.totalram as u64)
        .saturating_add(info.totalswap as u64)
        .saturating_mul(unit)
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

/// What identifies one version of a file: device, inode, size, modification and
/// change times (a process that writes the file in place can set its modification time
/// back, not its change time).
type FileKey = (u64, u64, u64, i64, i64, i64, i64);

fn file_key(file: &File) -> Option<FileKey> {
    let m = file.metadata().ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// A file version and the fingerprint of the key it was checked with, if any.
type Checked = (FileKey, Option<Digest32>);

/// Files whose memory passed its checks (or that this process wrote).
fn verified() -> std::sync::MutexGuard<'static, HashSet<Checked>> {
    static VERIFIED: LazyLock<Mutex<HashSet<Checked>>> = LazyLock::new(Mutex::default);
    VERIFIED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records that `file` (just written by this process, signed with `key` if given) is
/// consistent.
pub(crate) fn mark_verified(file: &File, key: Option<&[u8]>) {
    if let Some(f) = file_key(file) {
        let mut set = verified();
        set.insert((f, None));
        if let Some(key) = key {
            set.insert((f, Some(key_id(key))));
        }
    }
}
