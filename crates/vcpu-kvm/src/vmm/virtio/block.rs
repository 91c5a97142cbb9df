//! virtio-blk over a raw image file: read, write, flush and get-id, read-only if asked.
//! A read is `pread` straight into the guest's buffers (each checked by vm-memory to lie
//! in guest RAM, and marked written); a write goes through a bounded buffer. A request
//! that leaves the disk, or writes a read-only one, completes with an error status.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use vm_memory::bitmap::Bitmap;
use vm_memory::{ByteValued, GuestMemoryBackend};

use super::device::{BadRequest, Chain, VirtioDevice};
use super::guest_ram::GuestRam;
use crate::error::{Error, ErrorCode, Result};

const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Data segments per request the driver may use (the queue less header and status).
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// The most one copy moves between the file and guest memory.
const CHUNK: usize = 128 << 10;

/// The request header (`struct virtio_blk_outhdr`).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct RequestHeader {
    kind: u32,
    ioprio: u32,
    sector: u64,
}

// SAFETY: plain integers, no padding, any bit pattern is valid.
unsafe impl ByteValued for RequestHeader {}

/// A virtio block device.
pub struct Block {
    path: std::path::PathBuf,
    file: File,
    size: u64,
    read_only: bool,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    config: Vec<u8>,
    buffer: Vec<u8>,
}

impl Block {
    /// The image at `path`. `EINVAL` if its size is not a multiple of 512.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        const OP: &str = "virtioBlock";
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| {
                Error::new(
                    ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
                    OP,
                    format!("{OP}: cannot open the disk image {}: {e}", path.display()),
                )
            })?;
        let size = file.metadata().map_err(|e| Error::invalid(OP, format!("{e}")))?.len();
        if size % SECTOR != 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "{OP}: the disk image {} is {size} bytes, not a multiple of 512",
                    path.display()
                ),
            ));
        }
        // The id a guest sees in /sys/block/vdX/serial: the image's file name, cut to fit.
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = name.len().min(id.len());
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        let mut config = vec![0u8; 16];
        config[..8].copy_from_slice(&(size / SECTOR).to_le_bytes()); // capacity
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes()); // seg_max
        Ok(Block {
            path: path.to_path_buf(),
            file,
            size,
            read_only,
            id,
            config,
            buffer: vec![0; CHUNK],
        })
    }

    /// One request: its status and the bytes written into the guest's buffers.
    fn request(&mut self, chain: Chain<'_>, mem: &GuestRam) -> std::result::Result<u32, BadRequest> {
        let bad = |why: &str| BadRequest(why.to_string());
        let mut reader = chain.clone().reader(mem).map_err(|e| bad(&format!("{e:?}")))?;
        let chain_for_reads = chain.clone();
        let mut writer = chain.writer(mem).map_err(|e| bad(&format!("{e:?}")))?;
        let header: RequestHeader = reader.read_obj().map_err(|_| bad("a request without its header"))?;
        let room = writer.available_bytes();
        if room == 0 {
            return Err(bad("a request without room for its status"));
        }
        let mut status_at = writer.split_at(room - 1).map_err(|e| bad(&format!("{e:?}")))?;
        let (status, written) = match header.kind {
            VIRTIO_BLK_T_IN => self.read(header.sector, chain_for_reads, room - 1, mem),
            VIRTIO_BLK_T_OUT => self.write(header.sector, &mut reader),
            VIRTIO_BLK_T_FLUSH => (
                if self.read_only || self.file.sync_data().is_ok() {
                    VIRTIO_BLK_S_OK
                } else {
                    VIRTIO_BLK_S_IOERR
                },
                0,
            ),
            VIRTIO_BLK_T_GET_ID => {
                let n = writer.available_bytes().min(self.id.len());
                match writer.write_all(&self.id[..n]) {
                    Ok(()) => (VIRTIO_BLK_S_OK, n),
                    Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        };
        status_at
            .write_all(&[status as u8])
            .map_err(|_| bad("the status byte is not writable"))?;
        Ok(written as u32 + 1)
    }

    /// `len` bytes from `sector` into the chain's writable buffers (the status byte
    /// follows them), each read straight from the file into guest memory.
    fn read(&mut self, sector: u64, chain: Chain<'_>, len: usize, mem: &GuestRam) -> (u32, usize) {
        let Some(mut at) = self.span(sector, len) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let mut done = 0;
        for desc in chain.writable() {
            if done == len {
                break;
            }
            let n = (desc.len() as usize).min(len - done);
            let Ok(slice) = mem.get_slice(desc.addr(), n) else {
                return (VIRTIO_BLK_S_IOERR, done);
            };
            let mut filled = 0;
            while filled < n {
                let guard = slice.ptr_guard_mut();
                // SAFETY: the slice is `n` bytes of guest RAM, checked by vm-memory to lie
                // in one mapped region; `pread` writes at most `n - filled` bytes at its
                // `filled`th byte. Guest memory is shared with the guest: its contents are
                // not Rust data, so racing with the guest is the guest's own business.
                let got = unsafe {
                    libc::pread(
                        self.file.as_raw_fd(),
                        guard.as_ptr().add(filled).cast(),
                        n - filled,
                        (at + filled as u64) as libc::off_t,
                    )
                };
                if got <= 0 {
                    if got < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    return (VIRTIO_BLK_S_IOERR, done + filled);
                }
                filled += got as usize;
            }
            slice.bitmap().mark_dirty(0, n);
            done += n;
            at += n as u64;
        }
        (VIRTIO_BLK_S_OK, done)
    }

    /// The readable buffers after the header, to the disk from `sector`.
    fn write(
        &mut self,
        sector: u64,
        reader: &mut virtio_queue::Reader<'_, vm_memory::bitmap::MS<'_, GuestRam>>,
    ) -> (u32, usize) {
        if self.read_only {
            return (VIRTIO_BLK_S_IOERR, 0);
        }
        let len = reader.available_bytes();
        let Some(mut at) = self.span(sector, len) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            if reader.read_exact(&mut self.buffer[..n]).is_err()
                || self.file.write_all_at(&self.buffer[..n], at).is_err()
            {
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            done += n;
            at += n as u64;
        }
        (VIRTIO_BLK_S_OK, 0)
    }

    /// The byte offset of `len` bytes from `sector`, if whole sectors inside the disk.
    fn span(&self, sector: u64, len: usize) -> Option<u64> {
        let at = sector.checked_mul(SECTOR)?;
        let end = at.checked_add(len as u64)?;
        ((len as u64).is_multiple_of(SECTOR) && end <= self.size).then_some(at)
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX);
        if self.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    fn serve(&mut self, _queue: usize, chain: Chain<'_>, mem: &GuestRam) -> std::result::Result<u32, BadRequest> {
        self.request(chain, mem)
    }

    fn saved(&self) -> Option<super::SavedDevice> {
        Some(super::SavedDevice::Block {
            path: self.path.clone(),
            read_only: self.read_only,
        })
    }
}
