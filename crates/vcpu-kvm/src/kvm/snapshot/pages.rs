//! Guest memory into a snapshot file (whole images with holes for zero pages, or the
//! written pages of a diff) and back (private, copy-on-write mappings of the file).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use super::format::{bad, SavedPages, SavedRegion, SnapshotFile, CHUNK_PAGES};
use super::sign::{digest, ChunkDigests, Digest32};
use super::verify::is_zero;
use crate::error::{Error, Result};
use crate::kvm::memory::{GuestRegion, Mapping, PAGE_SIZE};

const OP: &str = "snapshot";
const PAGE: usize = PAGE_SIZE as usize;

/// Appends memory data to the snapshot being written.
pub(crate) struct PageWriter<'a> {
    file: &'a File,
    /// A signed snapshot: each chunk's SHA-256 goes into the state too.
    signed: bool,
    /// Where the next data goes.
    pub(crate) cursor: u64,
    /// Pages written so far.
    pub(crate) pages: u64,
}

impl<'a> PageWriter<'a> {
    pub(crate) fn new(file: &'a File, start: u64, signed: bool) -> Self {
        PageWriter {
            file,
            signed,
            cursor: start,
            pages: 0,
        }
    }

    fn write(&self, data: &[u8], at: u64) -> Result<()> {
        self.file.write_all_at(data, at).map_err(|e| io_error(&e))
    }

    /// The whole region as an image at the cursor; its zero pages stay holes.
    pub(crate) fn image(&mut self, region: &GuestRegion) -> Result<SavedPages> {
        let mem = region.as_slice();
        let pages = mem.len() / PAGE;
        let offset = self.cursor;
        let mut present = vec![0u64; pages.div_ceil(64)];
        let mut crcs = vec![0u32; pages.div_ceil(CHUNK_PAGES)];
        let mut digests = self.signed.then(|| ChunkDigests::new(crcs.len()));
        for range in candidate_pages(region) {
            let mut page = range.start;
            while page < range.end {
                // One chunk (or the part of it in this range) at a time: its CRC and
                // its runs of non-zero pages, each one write.
                let chunk = page / CHUNK_PAGES;
                let end = range.end.min((chunk + 1) * CHUNK_PAGES);
                let mut hasher = crc32fast::Hasher::new_with_initial(crcs[chunk]);
                let mut run: Option<usize> = None;
                for p in page..=end {
                    let data = (p < end).then(|| &mem[p * PAGE..(p + 1) * PAGE]);
                    match data {
                        Some(d) if !is_zero(d) => {
                            present[p / 64] |= 1 << (p % 64);
                            hasher.update(d);
                            if let Some(digests) = &mut digests {
                                digests.update(chunk, d);
                            }
                            run.get_or_insert(p);
                        }
                        _ => {
                            if let Some(first) = run.take() {
                                self.write(&mem[first * PAGE..p * PAGE], offset + (first * PAGE) as u64)?;
                                self.pages += (p - first) as u64;
                            }
                        }
                    }
                }
                crcs[chunk] = hasher.finalize();
                page = end;
            }
        }
        self.cursor += mem.len() as u64;
        Ok(SavedPages::Image {
            offset,
            present,
            crcs,
            digests: digests.map(ChunkDigests::finish).unwrap_or_default(),
        })
    }

    /// Only the pages of `written` (one bit per page): the non-zero ones packed at the
    /// cursor, the zero ones listed.
    pub(crate) fn packed(&mut self, region: &GuestRegion, written: &[u64]) -> Result<SavedPages> {
        let mem = region.as_slice();
        let pages = mem.len() / PAGE;
        let offset = self.cursor;
        let (mut list, mut zero, mut sums) = (Vec::new(), Vec::new(), Sums::default());
        let mut buf = Vec::with_capacity(CHUNK_PAGES * PAGE);
        let dirty = (0..pages).filter(|p| written.get(p / 64).is_some_and(|w| w >> (p % 64) & 1 == 1));
        for p in dirty {
            let data = &mem[p * PAGE..(p + 1) * PAGE];
            if is_zero(data) {
                zero.push(p as u32);
                continue;
            }
            list.push(p as u32);
            buf.extend_from_slice(data);
            if buf.len() == CHUNK_PAGES * PAGE {
                self.flush(&mut buf, &mut sums)?;
            }
        }
        self.flush(&mut buf, &mut sums)?;
        Ok(SavedPages::Packed {
            offset,
            written: list,
            crcs: sums.crcs,
            digests: sums.digests,
            zero,
        })
    }

    fn flush(&mut self, buf: &mut Vec<u8>, sums: &mut Sums) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.write(buf, self.cursor)?;
        sums.crcs.push(crc32fast::hash(buf));
        if self.signed {
            sums.digests.push(digest(buf));
        }
        self.cursor += buf.len() as u64;
        self.pages += (buf.len() / PAGE) as u64;
        buf.clear();
        Ok(())
    }
}

/// A diff's checksums and (signed) digests, one per chunk of packed pages.
#[derive(Default)]
struct Sums {
    crcs: Vec<u32>,
    digests: Vec<Digest32>,
}

fn io_error(e: &std::io::Error) -> Error {
    let errno = e.raw_os_error().unwrap_or(libc::EIO);
    Error::new(
        crate::ErrorCode::Errno(errno),
        OP,
        format!("{OP}: cannot write the snapshot: {e}"),
    )
}

/// The pages of `region` that may hold data: for memory-file regions, the file's data
/// extents (guest RAM never touched is a hole there, and costs no scan); else all.
pub(crate) fn candidate_pages(region: &GuestRegion) -> Vec<Range<usize>> {
    let pages = region.len() / PAGE;
    let Some((file, base)) = region.file_range() else {
        return std::iter::once(0..pages).collect();
    };
    let end = base + region.len() as u64;
    let mut ranges = Vec::new();
    let mut at = base;
    while at < end {
        // SAFETY: lseek on our own memfd; its offset is used by nobody else (mappings and
        // positioned I/O ignore it).
        let data = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // no data after `at`
            }
            return std::iter::once(((at - base) / PAGE_SIZE) as usize..pages).collect();
            // no SEEK_DATA: scan
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 { end } else { (hole as u64).min(end) };
        let first = ((data - base) / PAGE_SIZE) as usize;
        let last = (hole - base).div_ceil(PAGE_SIZE) as usize;
        ranges.push(first..last.min(pages));
        at = hole.max(data + PAGE_SIZE);
    }
    ranges
}

/// A region rebuilt from a snapshot.
pub(crate) struct LoadedRegion {
    /// A private mapping of the file's image with nothing copied into it.
    pub(crate) from_file: bool,
    pub(crate) slot: u32,
    pub(crate) guest_address: u64,
    pub(crate) readonly: bool,
    pub(crate) dirty_log: bool,
    pub(crate) mapping: Mapping,
}

/// The regions of `snap`, each a private mapping: an image maps the file itself (pages
/// come from it on first touch); a diff takes its base's region (`base`, already
/// loaded) or zeroed memory, and copies its own pages in.
pub(crate) fn load(snap: &SnapshotFile, mut base: Vec<LoadedRegion>) -> Result<Vec<LoadedRegion>> {
    const RESTORE: &str = "restoreVm";
    let mut loaded = Vec::with_capacity(snap.state.regions.len());
    for r in &snap.state.regions {
        let size = usize::try_from(r.size).map_err(|_| bad(&snap.path, "is corrupt: a region is too large"))?;
        let mapping = match &r.pages {
            SavedPages::Image { offset, .. } => Mapping::private(Some(&snap.file), *offset, size, RESTORE)?,
            SavedPages::Packed {
                offset, written, zero, ..
            } => {
                let from_base = base
                    .iter()
                    .position(|b| b.guest_address == r.guest_address && b.mapping.len() == size)
                    .map(|i| base.swap_remove(i).mapping);
                let mapping = match from_base {
                    Some(m) => m,
                    None => Mapping::private(None, 0, size, RESTORE)?,
                };
                apply(snap, r, &mapping, *offset, written, zero)?;
                mapping
            }
        };
        loaded.push(LoadedRegion {
            from_file: matches!(r.pages, SavedPages::Image { .. }),
            slot: r.slot,
            guest_address: r.guest_address,
            readonly: r.readonly,
            dirty_log: r.dirty_log,
            mapping,
        });
    }
    Ok(loaded)
}

/// Copies a diff's pages into `mapping`, and zeroes the pages that became zero.
fn apply(
    snap: &SnapshotFile,
    r: &SavedRegion,
    mapping: &Mapping,
    offset: u64,
    written: &[u32],
    zero: &[u32],
) -> Result<()> {
    // SAFETY: the whole fresh private mapping, which no vcpu uses yet (the VM is being
    // restored); the page numbers were checked against its size by `verify_memory`.
    let mem = unsafe { std::slice::from_raw_parts_mut(mapping.as_ptr(), mapping.len()) };
    let mut i = 0;
    while i < written.len() {
        // A run of consecutive pages is one read.
        let mut j = i + 1;
        while j < written.len() && written[j] == written[j - 1] + 1 {
            j += 1;
        }
        let first = written[i] as usize * PAGE;
        snap.file
            .read_exact_at(&mut mem[first..first + (j - i) * PAGE], offset + (i * PAGE) as u64)
            .map_err(|_| {
                bad(
                    &snap.path,
                    format!("is truncated (the region at {:#x})", r.guest_address),
                )
            })?;
        i = j;
    }
    for &p in zero {
        let p = p as usize * PAGE;
        mem[p..p + PAGE].fill(0);
    }
    Ok(())
}
