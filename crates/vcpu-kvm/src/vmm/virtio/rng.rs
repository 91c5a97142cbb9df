//! virtio-rng: each request's writable buffers filled from the host's `getrandom`.

use std::io::Write;

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;

use super::device::{BadRequest, Chain, VirtioDevice};
use super::guest_ram::GuestRam;

/// The most one request gets (Linux asks for a page at most): a driver asking for more
/// gets this much.
const MAX_REQUEST: usize = 4096;

/// A virtio entropy device.
#[derive(Default)]
pub struct Rng {
    buffer: Vec<u8>,
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256]
    }

    fn config(&self) -> &[u8] {
        &[]
    }

    fn saved(&self) -> Option<super::SavedDevice> {
        Some(super::SavedDevice::Rng)
    }

    fn serve(&mut self, _queue: usize, chain: Chain<'_>, mem: &GuestRam) -> Result<u32, BadRequest> {
        let mut writer = chain.writer(mem).map_err(|e| BadRequest(format!("{e:?}")))?;
        let n = writer.available_bytes().min(MAX_REQUEST);
        self.buffer.resize(n, 0);
        let mut filled = 0;
        while filled < n {
            // SAFETY: the pointer and length describe the unfilled tail of our buffer.
            let got = unsafe { libc::getrandom(self.buffer[filled..].as_mut_ptr().cast(), n - filled, 0) };
            if got <= 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(BadRequest("the host's getrandom failed".into()));
            }
            filled += got as usize;
        }
        writer
            .write_all(&self.buffer[..n])
            .map_err(|_| BadRequest("a buffer is not writable".into()))?;
        Ok(n as u32)
    }
}
