//! virtio-vsock (stream sockets) with Firecracker's host convention on a UNIX socket
//! path `uds`:
//!
//! - a guest connection to host port P goes to the UNIX socket `uds_P` (a refused one
//!   is reset);
//! - a host process connects to `uds` and writes `CONNECT P\n`; once the guest accepts
//!   on port P, it reads `OK <host port>\n`, and then the stream is the connection.
//!
//! Credit follows the spec: the device advertises a 256 KiB receive buffer and sends the
//! guest only what the guest's advertised buffer has room for. Every length the guest
//! sends is bounded by what it may send; a guest that overruns its credit, or speaks to
//! a CID that is not the host's, gets its connection reset.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use vm_memory::ByteValued;

use super::device::{QueueIo, VirtioDevice};
use crate::error::{Error, ErrorCode, Result};

const RX: usize = 0;
const TX: usize = 1;
const EVENT: usize = 2;
const HOST_CID: u64 = 2;
const TYPE_STREAM: u16 = 1;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const OP_CREDIT_REQUEST: u16 = 7;
/// What the device buffers for one connection on its way to the host.
const BUF_ALLOC: u32 = 256 << 10;
/// The most one packet to the guest carries.
const MAX_PAYLOAD: usize = 64 << 10;
/// The most a host peer may write before its `CONNECT P\n` line ends.
const MAX_LINE: usize = 64;
/// Host-side ports the device hands out for host-initiated connections.
const FIRST_HOST_PORT: u32 = 1 << 30;

const LISTENER: u64 = 0;
const HANDSHAKE: u64 = 1 << 40;
const CONNECTION: u64 = 2 << 40;

/// `struct virtio_vsock_hdr`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C, packed)]
struct Header {
    src_cid: u64,
    dst_cid: u64,
    src_port: u32,
    dst_port: u32,
    len: u32,
    kind: u16,
    op: u16,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
}

// SAFETY: plain integers, packed: no padding, any bit pattern is valid.
unsafe impl ByteValued for Header {}

const HEADER: usize = std::mem::size_of::<Header>();

/// A packet header from the host side of `c` to guest `cid`.
fn header(cid: u64, c: &Connection, op: u16, len: u32) -> Header {
    Header {
        src_cid: HOST_CID,
        dst_cid: cid,
        src_port: c.local,
        dst_port: c.peer,
        len,
        kind: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: BUF_ALLOC,
        fwd_cnt: c.fwd_cnt,
    }
}

/// One stream between a guest port and a host socket.
struct Connection {
    stream: UnixStream,
    /// The host side's port and the guest's.
    local: u32,
    peer: u32,
    /// Host-initiated, waiting for the guest's RESPONSE.
    connecting: bool,
    /// Guest bytes not yet written to the host socket (after the `OK` line's, which
    /// are not the guest's and count for no credit).
    to_host: VecDeque<u8>,
    line_left: usize,
    /// Bytes of the guest's delivered to the host, and what the guest last heard of it.
    fwd_cnt: u32,
    told_fwd_cnt: u32,
    /// Bytes sent to the guest, and the guest's receive buffer as it last said.
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The host socket has more to read (as far as the device knows).
    readable: bool,
}

impl Connection {
    /// What the guest's buffer still has room for.
    fn credit(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }
}

/// A virtio-vsock device.
pub struct Vsock {
    cid: u64,
    uds: PathBuf,
    listener: UnixListener,
    config: [u8; 8],
    /// Host connections still sending their `CONNECT P\n` line.
    handshakes: HashMap<u64, (UnixStream, Vec<u8>)>,
    connections: HashMap<u64, Connection>,
    /// Packets without payload waiting for the guest's receive buffers.
    control: VecDeque<Header>,
    next_id: u64,
    next_port: u32,
    /// The driver gave no receive buffer last time one was wanted.
    starved: bool,
    /// Restored from a snapshot: the guest is to hear its connections are gone.
    announce_reset: bool,
}

impl Vsock {
    /// A device for guest `cid` (3 or more) serving the host side on `uds` (which must
    /// not exist; it is removed when the device goes).
    pub fn new(cid: u64, uds: &Path) -> Result<Self> {
        const OP: &str = "virtioVsock";
        if !(3..u32::MAX as u64).contains(&cid) {
            return Err(Error::invalid(
                OP,
                format!("{OP}: the guest's CID must be 3 to 2^32 - 2, not {cid}"),
            ));
        }
        let listener = UnixListener::bind(uds).map_err(|e| {
            Error::new(
                ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
                OP,
                format!("{OP}: cannot listen on {}: {e}", uds.display()),
            )
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::invalid(OP, e.to_string()))?;
        Ok(Vsock {
            cid,
            uds: uds.to_path_buf(),
            listener,
            config: cid.to_le_bytes(),
            handshakes: HashMap::new(),
            connections: HashMap::new(),
            control: VecDeque::new(),
            next_id: 0,
            next_port: FIRST_HOST_PORT,
            starved: false,
            announce_reset: false,
        })
    }

    /// The device of a restored machine: as [`Vsock::new`], taking over a socket file a
    /// process that is gone left behind, and telling the guest its connections are gone.
    pub fn restored(cid: u64, uds: &Path) -> Result<Self> {
        if uds.exists() && UnixStream::connect(uds).is_err() {
            let _ = std::fs::remove_file(uds);
        }
        let mut v = Self::new(cid, uds)?;
        v.announce_reset = true;
        Ok(v)
    }

    fn header(&self, c: &Connection, op: u16, len: u32) -> Header {
        header(self.cid, c, op, len)
    }

    /// A reset for a packet from the guest that has no connection (or broke one).
    fn reset_for(&mut self, h: &Header) {
        if h.op == OP_RST {
            return;
        }
        self.control.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            kind: TYPE_STREAM,
            op: OP_RST,
            ..Default::default()
        });
    }

    fn find(&self, local: u32, peer: u32) -> Option<u64> {
        self.connections
            .iter()
            .find(|(_, c)| c.local == local && c.peer == peer)
            .map(|(id, _)| *id)
    }

    /// One packet from the guest.
    fn take_packet(&mut self, h: Header, payload: &[u8]) {
        if h.dst_cid != HOST_CID || h.src_cid != self.cid || h.kind != TYPE_STREAM {
            return self.reset_for(&h);
        }
        let id = self.find(h.dst_port, h.src_port);
        match (h.op, id) {
            (OP_REQUEST, None) => {
                let port = h.dst_port;
                let path = format!("{}_{port}", self.uds.display());
                match UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                    Ok(stream) => {
                        let c = Connection {
                            stream,
                            local: h.dst_port,
                            peer: h.src_port,
                            connecting: false,
                            to_host: VecDeque::new(),
                            line_left: 0,
                            fwd_cnt: 0,
                            told_fwd_cnt: 0,
                            tx_cnt: 0,
                            peer_buf_alloc: h.buf_alloc,
                            peer_fwd_cnt: h.fwd_cnt,
                            readable: true,
                        };
                        self.control.push_back(self.header(&c, OP_RESPONSE, 0));
                        self.next_id += 1;
                        self.connections.insert(CONNECTION | self.next_id, c);
                    }
                    Err(_) => self.reset_for(&h),
                }
            }
            (_, None) => self.reset_for(&h),
            (op, Some(id)) => {
                let Some(c) = self.connections.get_mut(&id) else {
                    return;
                };
                c.peer_buf_alloc = h.buf_alloc;
                c.peer_fwd_cnt = h.fwd_cnt;
                match op {
                    OP_RESPONSE if c.connecting => {
                        c.connecting = false;
                        c.readable = true;
                        let line = format!("OK {}\n", c.local);
                        c.to_host.extend(line.as_bytes());
                        c.line_left = line.len();
                        self.flush(id);
                    }
                    OP_RW if !c.connecting && c.to_host.len() + payload.len() <= BUF_ALLOC as usize => {
                        // Straight to the socket when nothing waits before it; only what
                        // it does not take now is buffered (one copy less).
                        let mut taken = 0;
                        if c.to_host.is_empty() {
                            taken = loop {
                                match c.stream.write(payload) {
                                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                                    written => break written.unwrap_or(0),
                                }
                            };
                            c.fwd_cnt = c.fwd_cnt.wrapping_add(taken as u32);
                        }
                        c.to_host.extend(&payload[taken..]);
                        self.flush(id);
                    }
                    OP_CREDIT_UPDATE => {}
                    OP_CREDIT_REQUEST => {
                        let h = header(self.cid, c, OP_CREDIT_UPDATE, 0);
                        self.control.push_back(h);
                    }
                    // SHUTDOWN, RST, and anything out of turn (an RW past its credit)
                    // close the connection; the guest hears a reset unless it sent one.
                    _ => {
                        let Some(c) = self.connections.remove(&id) else {
                            return;
                        };
                        if op != OP_RST {
                            self.control.push_back(self.header(&c, OP_RST, 0));
                        }
                    }
                }
            }
        }
    }

    /// Writes what the guest sent to the host socket, as far as it takes it.
    fn flush(&mut self, id: u64) {
        let Some(c) = self.connections.get_mut(&id) else {
            return;
        };
        while !c.to_host.is_empty() {
            let (front, _) = c.to_host.as_slices();
            match c.stream.write(front) {
                Ok(0) => break,
                Ok(n) => {
                    c.to_host.drain(..n);
                    let line = n.min(c.line_left);
                    c.line_left -= line;
                    c.fwd_cnt = c.fwd_cnt.wrapping_add((n - line) as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    let Some(c) = self.connections.remove(&id) else {
                        return;
                    };
                    self.control.push_back(self.header(&c, OP_RST, 0));
                    return;
                }
            }
        }
        // Tell the guest it has room again once a quarter of its buffer drained.
        if c.fwd_cnt.wrapping_sub(c.told_fwd_cnt) >= BUF_ALLOC / 4 {
            c.told_fwd_cnt = c.fwd_cnt;
            let h = header(self.cid, c, OP_CREDIT_UPDATE, 0);
            self.control.push_back(h);
        }
    }

    /// Accepts host connections on `uds`.
    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.next_id += 1;
                self.handshakes.insert(HANDSHAKE | self.next_id, (stream, Vec::new()));
            }
        }
    }

    /// Reads a host connection's `CONNECT P\n`; then asks the guest to accept it.
    fn handshake(&mut self, id: u64) {
        let Some((stream, line)) = self.handshakes.get_mut(&id) else {
            return;
        };
        let mut byte = [0u8; 1];
        let port = loop {
            match stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break Some(std::mem::take(line)),
                Ok(1) if line.len() < MAX_LINE => line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Closed, too long, or an error: the connection goes.
                _ => break None,
            }
        };
        let Some((stream, _)) = self.handshakes.remove(&id) else {
            return;
        };
        let port = port
            .and_then(|l| String::from_utf8(l).ok())
            .and_then(|l| l.strip_prefix("CONNECT ").and_then(|p| p.trim().parse::<u32>().ok()));
        let Some(port) = port else {
            return;
        };
        let local = self.next_port;
        self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_HOST_PORT);
        let c = Connection {
            stream,
            local,
            peer: port,
            connecting: true,
            to_host: VecDeque::new(),
            line_left: 0,
            fwd_cnt: 0,
            told_fwd_cnt: 0,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            readable: false,
        };
        self.control.push_back(self.header(&c, OP_REQUEST, 0));
        self.connections.insert(CONNECTION | (id & !HANDSHAKE), c);
    }

    /// Sends the guest what waits for it: control packets, then host data, as far as its
    /// receive buffers and each connection's credit go.
    fn deliver(&mut self, io: &mut QueueIo<'_>) {
        loop {
            let data_possible = self
                .connections
                .values()
                .any(|c| !c.connecting && c.readable && c.credit() > 0);
            if self.control.is_empty() && !data_possible {
                return;
            }
            let Some(chain) = io.pop(RX) else {
                self.starved = true;
                return;
            };
            let Some((h, payload)) = self
                .control
                .pop_front()
                .map(|h| (h, Vec::new()))
                .or_else(|| self.host_data())
            else {
                // Every socket said "nothing after all": the buffer goes back unused.
                io.unpop(RX);
                return;
            };
            let head = chain.head_index();
            let written = match chain.writer(io.mem()) {
                Ok(mut w) if w.available_bytes() >= HEADER + payload.len() => {
                    if w.write_obj(h).is_ok() && w.write_all(&payload).is_ok() {
                        (HEADER + payload.len()) as u32
                    } else {
                        0
                    }
                }
                _ => {
                    io.complain("a receive buffer too small for a packet");
                    0
                }
            };
            io.add_used(RX, head, written);
        }
    }

    /// Reads the next piece of host data a connection may send (credit allowing), or a
    /// packet saying a host socket closed.
    fn host_data(&mut self) -> Option<(Header, Vec<u8>)> {
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        for id in ids {
            let Some(c) = self.connections.get_mut(&id) else {
                continue;
            };
            if c.connecting || !c.readable || c.credit() == 0 {
                continue;
            }
            let mut buf = vec![0u8; (c.credit() as usize).min(MAX_PAYLOAD)];
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    // The host closed its end: the guest hears no more will come.
                    let c = self.connections.remove(&id)?;
                    let mut h = self.header(&c, OP_SHUTDOWN, 0);
                    h.flags = 3;
                    return Some((h, Vec::new()));
                }
                Ok(n) => {
                    buf.truncate(n);
                    c.tx_cnt = c.tx_cnt.wrapping_add(n as u32);
                    return Some((header(self.cid, c, OP_RW, n as u32), buf));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                    c.readable = false;
                }
                Err(_) => {
                    let c = self.connections.remove(&id)?;
                    return Some((self.header(&c, OP_RST, 0), Vec::new()));
                }
            }
        }
        None
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256, 256]
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    fn notified(&mut self, queue: usize, io: &mut QueueIo<'_>) {
        if queue == TX {
            io.read_each(TX, |r| {
                let h: Header = r
                    .read_obj()
                    .map_err(|_| "a packet shorter than its header".to_string())?;
                // The payload the header claims, bounded by what the chain holds.
                let n = (h.len as usize).min(r.available_bytes()).min(BUF_ALLOC as usize);
                let mut payload = vec![0u8; n];
                r.read_exact(&mut payload).map_err(|e| e.to_string())?;
                self.take_packet(h, &payload);
                Ok(())
            });
        } else if queue == RX {
            self.starved = false;
        }
        self.deliver(io);
    }

    fn host_events(&self) -> Vec<(RawFd, u64, bool)> {
        let mut fds = vec![(self.listener.as_raw_fd(), LISTENER, false)];
        fds.extend(self.handshakes.iter().map(|(id, (s, _))| (s.as_raw_fd(), *id, false)));
        for (id, c) in &self.connections {
            // Read only what can be sent; write while the host has not taken it all.
            let read = !self.starved && !c.connecting && c.credit() > 0;
            let write = !c.to_host.is_empty();
            if read || write {
                fds.push((c.stream.as_raw_fd(), *id, write));
            }
        }
        fds
    }

    fn host_event(&mut self, token: u64, io: &mut QueueIo<'_>) {
        match token {
            LISTENER => self.accept(),
            t if t & HANDSHAKE != 0 && t & CONNECTION == 0 => self.handshake(t),
            t => {
                if let Some(c) = self.connections.get_mut(&t) {
                    c.readable = true;
                }
                self.flush(t);
            }
        }
        self.deliver(io);
    }

    fn saved(&self) -> Option<super::SavedDevice> {
        Some(super::SavedDevice::Vsock {
            cid: self.cid,
            uds: self.uds.clone(),
        })
    }

    fn started(&mut self, io: &mut QueueIo<'_>) {
        // A restored device has none of the guest's connections: the guest hears of a
        // transport reset (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, id 0) and drops them.
        if std::mem::take(&mut self.announce_reset) {
            if let Some(chain) = io.pop(EVENT) {
                let head = chain.head_index();
                let n = match chain.writer(io.mem()) {
                    Ok(mut w) => w.write_all(&0u32.to_le_bytes()).map_or(0, |()| 4),
                    Err(_) => 0,
                };
                io.add_used(EVENT, head, n);
            }
        }
    }

    fn reset(&mut self) {
        // A reset device forgets its connections: their host ends close.
        self.connections.clear();
        self.handshakes.clear();
        self.control.clear();
        self.starved = false;
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds);
    }
}

#[cfg(test)]
#[path = "vsock_bench.rs"]
mod bench;

#[cfg(test)]
#[path = "vsock_tests.rs"]
mod tests;
