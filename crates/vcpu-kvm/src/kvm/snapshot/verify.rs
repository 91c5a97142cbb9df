//! The memory checks of a snapshot being restored: every chunk against its CRC (and,
//! opened with a key, its SHA-256), the holes of an image empty; once per file version,
//! key and process.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{LazyLock, Mutex};

use super::format::{bad, SavedPages, SavedRegion, SnapshotFile, CHUNK_PAGES};
use super::sign::{digest, key_id, ChunkHasher, Digest32};
use crate::error::{Error, Result};
use crate::kvm::memory::PAGE_SIZE;

impl SnapshotFile {
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
