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

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::kvm::arch;
use crate::kvm::memory::PAGE_SIZE;

use super::sign::{key_id, Digest32, Signer};

pub(crate) const MAGIC: [u8; 8] = *b"VCPUSNAP";
pub(crate) const VERSION: u32 = 2;
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
        if header.state_len > super::limits::MAX_STATE_LEN {
            return Err(bad(
                path,
                format!(
                    "is corrupt: its header's state length is {} bytes (at most {})",
                    header.state_len,
                    super::limits::MAX_STATE_LEN
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
    pub(super) key_id: Option<Digest32>,
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
        let mut raw = vec![0u8; header.state_len as usize]; // at most limits::MAX_STATE_LEN
        file.read_exact_at(&mut raw, header.state_offset)
            .map_err(|_| bad(path, "is truncated"))?;
        let state = super::limits::decode_state(&raw).map_err(|e| bad(path, format!("is corrupt: {e}")))?;
        super::limits::check_state(&state).map_err(|why| bad(path, format!("is corrupt: {why}")))?;
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file,
            header,
            state,
            key_id: key.map(key_id),
        })
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
