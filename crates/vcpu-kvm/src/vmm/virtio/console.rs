//! virtio-console (hvc0): what the guest writes goes to the machine's console output,
//! what the host types waits (up to 16 KiB) for the guest's receive buffers.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{QueueIo, VirtioDevice};
use crate::error::{Context, Result};

const RECEIVE: usize = 0;
const TRANSMIT: usize = 1;
/// Input the host may queue before the guest reads it.
const INPUT_ROOM: usize = 16 << 10;
/// The most one transmit request moves.
const MAX_WRITE: usize = 64 << 10;

/// Typed input waiting for the guest, shared by the host's writer and the device.
pub struct ConsoleInput {
    pending: Mutex<VecDeque<u8>>,
    arrived: EventFd,
}

impl ConsoleInput {
    fn lock(&self) -> MutexGuard<'_, VecDeque<u8>> {
        // A VecDeque push cannot be left half done: a poisoned lock is still consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues what fits of `bytes`; returns how many did.
    pub fn push(&self, bytes: &[u8]) -> usize {
        let mut pending = self.lock();
        let n = bytes.len().min(INPUT_ROOM - pending.len());
        pending.extend(&bytes[..n]);
        drop(pending);
        if n > 0 {
            // A full counter (after 2^64 - 1 wake-ups) only delays a wake-up.
            let _ = self.arrived.write(1);
        }
        n
    }

    /// Room for more input.
    pub fn room(&self) -> usize {
        INPUT_ROOM - self.lock().len()
    }
}

/// A virtio console device.
pub struct Console {
    output: Box<dyn Write + Send>,
    input: Arc<ConsoleInput>,
    buffer: Vec<u8>,
}

impl Console {
    /// A console writing to `output`; its input is [`Console::input`].
    pub fn new(output: Box<dyn Write + Send>) -> Result<Self> {
        Ok(Console {
            output,
            input: Arc::new(ConsoleInput {
                pending: Mutex::new(VecDeque::new()),
                arrived: EventFd::new(EFD_NONBLOCK).op("virtioConsole")?,
            }),
            buffer: Vec::new(),
        })
    }

    /// Where the host's input goes.
    pub fn input(&self) -> Arc<ConsoleInput> {
        self.input.clone()
    }

    /// Moves pending input into the guest's receive buffers, as long as both last.
    fn deliver(&mut self, io: &mut QueueIo<'_>) {
        loop {
            if self.input.lock().is_empty() {
                return;
            }
            let Some(chain) = io.pop(RECEIVE) else {
                return;
            };
            let head = chain.head_index();
            let written = match chain.writer(io.mem()) {
                Ok(mut w) => {
                    let mut pending = self.input.lock();
                    let n = w.available_bytes().min(pending.len());
                    let bytes: Vec<u8> = pending.drain(..n).collect();
                    drop(pending);
                    w.write_all(&bytes).map(|()| n).unwrap_or(0)
                }
                Err(e) => {
                    io.complain(&format!("dropped a receive buffer: {e:?}"));
                    0
                }
            };
            io.add_used(RECEIVE, head, written as u32);
        }
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[64, 64]
    }

    fn config(&self) -> &[u8] {
        // cols, rows, max_nr_ports, emerg_wr: unused without their features.
        &[0; 12]
    }

    fn notified(&mut self, queue: usize, io: &mut QueueIo<'_>) {
        match queue {
            RECEIVE => self.deliver(io),
            TRANSMIT => io.read_each(TRANSMIT, |r| {
                let n = r.available_bytes().min(MAX_WRITE);
                self.buffer.resize(n, 0);
                r.read_exact(&mut self.buffer[..n]).map_err(|e| e.to_string())?;
                // Lost output is the host's loss, not the guest's problem.
                let _ = self.output.write_all(&self.buffer[..n]);
                Ok(())
            }),
            _ => {}
        }
    }

    fn saved(&self) -> Option<super::SavedDevice> {
        Some(super::SavedDevice::Console)
    }

    fn host_events(&self) -> Vec<(RawFd, u64, bool)> {
        vec![(self.input.arrived.as_raw_fd(), 0, false)]
    }

    fn host_event(&mut self, _token: u64, io: &mut QueueIo<'_>) {
        let _ = self.input.arrived.read();
        self.deliver(io);
    }
}
