//! `npm run bench:virtio`'s vsock part (`cargo test --release -p vcpu-kvm --lib --
//! --ignored --nocapture bench_vsock`): stream throughput through the device's packet
//! path — guest packets in, writes to the host's UNIX socket out, and host data read
//! into packets the other way — with the device's CPU time per MiB
//! (CLOCK_THREAD_CPUTIME_ID) against plain socket writes and reads of the same sizes.
//! The descriptor walk is virtio-queue's and is left out (the blk benchmark has it).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use super::tests::{device, from};
use super::*;

/// Bytes moved each way.
const TOTAL: usize = 256 << 20;

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A thread that reads `stream` to its end; the byte count.
fn drain(mut stream: UnixStream) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        while let Ok(k) = stream.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    })
}

/// Sleeps until `stream` is ready for `events` (as the device thread's epoll does).
fn wait_for(stream: &UnixStream, events: i16) {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for a socket that outlives the call.
    unsafe { libc::poll(&mut fd, 1, -1) };
}

fn mib_per_sec(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / (1 << 20) as f64
}

/// Guest to host: 64 KiB packets, the device writing them to the host socket as its
/// reader drains it, and waiting (flushing) when the guest's credit is used up.
fn guest_to_host() -> String {
    let (mut v, uds) = device("bench-tx");
    let listener = UnixListener::bind(format!("{}_90", uds.display())).unwrap();
    v.take_packet(from(OP_REQUEST, 2000, 90), &[]);
    let (host, _) = listener.accept().unwrap();
    let reader = drain(host);
    let id = v.find(90, 2000).unwrap();
    let payload = vec![0x5au8; MAX_PAYLOAD];
    let (c0, w0) = (thread_cpu_ns(), Instant::now());
    let mut sent = 0;
    while sent < TOTAL {
        // The guest sends only what its credit allows, as a driver would; the device
        // waits for the socket to take more, as its thread's epoll does.
        while v.connections[&id].to_host.len() + payload.len() > BUF_ALLOC as usize {
            wait_for(&v.connections[&id].stream, libc::POLLOUT);
            v.flush(id);
        }
        v.take_packet(from(OP_RW, 2000, 90), &payload);
        sent += payload.len();
    }
    while !v.connections[&id].to_host.is_empty() {
        wait_for(&v.connections[&id].stream, libc::POLLOUT);
        v.flush(id);
    }
    let (cpu, wall) = (thread_cpu_ns() - c0, w0.elapsed().as_secs_f64());
    v.take_packet(from(OP_SHUTDOWN, 2000, 90), &[]);
    drop(v);
    assert_eq!(reader.join().unwrap(), TOTAL, "every byte reaches the host");
    // The same bytes written to a socket alone.
    let (mut a, b) = UnixStream::pair().unwrap();
    let reader = drain(b);
    let c0 = thread_cpu_ns();
    for _ in 0..TOTAL / payload.len() {
        a.write_all(&payload).unwrap();
    }
    let plain = thread_cpu_ns() - c0;
    drop(a);
    reader.join().unwrap();
    let _ = std::fs::remove_file(format!("{}_90", uds.display()));
    report("guest-to-host", cpu, wall, plain)
}

/// Host to guest: a host writer fills the socket; the device reads it into packets as
/// the guest's credit allows, and the guest hands credit back as it consumes them.
fn host_to_guest() -> String {
    let (mut v, uds) = device("bench-rx");
    let listener = UnixListener::bind(format!("{}_91", uds.display())).unwrap();
    v.take_packet(
        Header {
            buf_alloc: BUF_ALLOC,
            ..from(OP_REQUEST, 2001, 91)
        },
        &[],
    );
    let (mut host, _) = listener.accept().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0xa5u8; MAX_PAYLOAD];
        for _ in 0..TOTAL / chunk.len() {
            host.write_all(&chunk).unwrap();
        }
    });
    let id = v.find(91, 2001).unwrap();
    let (c0, w0) = (thread_cpu_ns(), Instant::now());
    let mut got = 0usize;
    while got < TOTAL {
        v.connections.get_mut(&id).unwrap().readable = true;
        match v.host_data() {
            Some((h, data)) if h.op == OP_RW => {
                got += data.len();
                // The guest consumed it at once and says so.
                v.take_packet(
                    Header {
                        buf_alloc: BUF_ALLOC,
                        fwd_cnt: got as u32,
                        ..from(OP_CREDIT_UPDATE, 2001, 91)
                    },
                    &[],
                );
            }
            Some(_) => panic!("the connection ended early"),
            None => wait_for(&v.connections[&id].stream, libc::POLLIN),
        }
    }
    let (cpu, wall) = (thread_cpu_ns() - c0, w0.elapsed().as_secs_f64());
    writer.join().unwrap();
    drop(v);
    // The same bytes read from a socket alone.
    let (a, mut b) = UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let mut a = a;
        let chunk = vec![0xa5u8; MAX_PAYLOAD];
        for _ in 0..TOTAL / chunk.len() {
            a.write_all(&chunk).unwrap();
        }
    });
    let mut buf = vec![0u8; MAX_PAYLOAD];
    let c0 = thread_cpu_ns();
    let mut n = 0;
    while n < TOTAL {
        n += b.read(&mut buf).unwrap();
    }
    let plain = thread_cpu_ns() - c0;
    writer.join().unwrap();
    let _ = std::fs::remove_file(format!("{}_91", uds.display()));
    report("host-to-guest", cpu, wall, plain)
}

fn report(name: &str, cpu: u64, wall: f64, plain: u64) -> String {
    let mib = (TOTAL >> 20) as f64;
    format!(
        "{{\"name\":\"vsock-{name}\",\"bytes\":{TOTAL},\"mibPerSec\":{:.0},\"deviceCpuNsPerMib\":{:.0},\"socketCpuNsPerMib\":{:.0}}}",
        mib_per_sec(TOTAL, wall),
        cpu as f64 / mib,
        plain as f64 / mib,
    )
}

#[test]
#[ignore]
fn bench_vsock() {
    println!("BENCH {}", guest_to_host());
    println!("BENCH {}", host_to_guest());
}
