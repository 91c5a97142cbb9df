//! virtio-net over a tap device (`/dev/net/tun`), offloads off: each frame crosses
//! whole, the device adding and dropping the 12-byte virtio-net header.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;

use super::device::{QueueIo, VirtioDevice};
use crate::error::{Error, ErrorCode, Result};

const RX: usize = 0;
const TX: usize = 1;
/// `struct virtio_net_hdr_v1`: all zero but `num_buffers` = 1 on the way in.
const HEADER: usize = 12;
/// The largest frame (64 KiB plus the Ethernet header), what one read may return.
const MAX_FRAME: usize = 65550;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A virtio network device.
pub struct Net {
    name: String,
    tap: File,
    config: [u8; 6],
    /// A frame read from the tap while the driver had no receive buffer.
    pending: Option<Vec<u8>>,
    starved: bool,
    buffer: Vec<u8>,
}

impl Net {
    /// A device on the tap interface `name` (created if it does not exist, which needs
    /// CAP_NET_ADMIN), with MAC address `mac`.
    pub fn open(name: &str, mac: [u8; 6]) -> Result<Self> {
        const OP: &str = "virtioNet";
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(Error::invalid(
                OP,
                format!("{OP}: a tap name is 1 to 15 bytes, not '{name}'"),
            ));
        }
        let errno = |e: std::io::Error, what: &str| {
            Error::new(
                ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
                OP,
                format!("{OP}: {what}: {e}"),
            )
        };
        let tap = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| errno(e, "cannot open /dev/net/tun"))?;
        // struct ifreq: the name, then the flags.
        let mut ifreq = [0u8; 40];
        ifreq[..name.len()].copy_from_slice(name.as_bytes());
        ifreq[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes), which we own.
        if unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) } < 0 {
            return Err(errno(
                std::io::Error::last_os_error(),
                &format!("cannot attach to tap '{name}'"),
            ));
        }
        Ok(Net {
            name: name.to_string(),
            tap,
            config: mac,
            pending: None,
            starved: false,
            buffer: vec![0; MAX_FRAME],
        })
    }

    /// Moves frames from the tap into the driver's receive buffers, while both last.
    fn deliver(&mut self, io: &mut QueueIo<'_>) {
        loop {
            let frame = match self.pending.take() {
                Some(f) => f,
                None => match self.tap.read(&mut self.buffer) {
                    Ok(n) => self.buffer[..n].to_vec(),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return,
                },
            };
            let Some(chain) = io.pop(RX) else {
                self.pending = Some(frame);
                self.starved = true;
                return;
            };
            let head = chain.head_index();
            let written = match chain.writer(io.mem()) {
                Ok(mut w) if w.available_bytes() >= HEADER + frame.len() => {
                    let mut header = [0u8; HEADER];
                    header[10] = 1; // num_buffers
                    if w.write_all(&header).is_ok() && w.write_all(&frame).is_ok() {
                        (HEADER + frame.len()) as u32
                    } else {
                        0
                    }
                }
                _ => {
                    io.complain("a receive buffer too small for a frame (the frame is dropped)");
                    0
                }
            };
            io.add_used(RX, head, written);
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256]
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    fn notified(&mut self, queue: usize, io: &mut QueueIo<'_>) {
        if queue == TX {
            io.read_each(TX, |r| {
                let n = r.available_bytes();
                if n <= HEADER || n > HEADER + MAX_FRAME {
                    return Err("a frame shorter than its header or longer than 64 KiB".into());
                }
                r.read_exact(&mut self.buffer[..n]).map_err(|e| e.to_string())?;
                // A full tap queue drops the frame, as a busy wire would.
                let _ = self.tap.write(&self.buffer[HEADER..n]);
                Ok(())
            });
        } else if queue == RX {
            self.starved = false;
            self.deliver(io);
        }
    }

    fn host_events(&self) -> Vec<(RawFd, u64, bool)> {
        if self.starved {
            Vec::new()
        } else {
            vec![(self.tap.as_raw_fd(), 0, false)]
        }
    }

    fn host_event(&mut self, _token: u64, io: &mut QueueIo<'_>) {
        self.deliver(io);
    }

    fn reset(&mut self) {
        self.pending = None;
        self.starved = false;
    }

    fn saved(&self) -> Option<super::SavedDevice> {
        Some(super::SavedDevice::Net {
            tap: self.name.clone(),
            mac: self.config,
        })
    }
}
