//! virtio-mmio devices driven by a driver written in the test (`common/virtio_driver.rs`):
//! virtio-blk over an image file and virtio-rng, then drivers that break every rule the
//! transport must survive. Nothing here may panic, hang, or touch memory outside the
//! guest's.

mod common;

#[path = "common/virtio_driver.rs"]
mod virtio_driver;

use common::*;
use vcpu_kvm::vmm::virtio::{Block, MmioTransport, Rng};
use virtio_driver::*;

const BASE: u64 = 0xd000_0000;
const RO_FEATURE: u64 = 1 << 5;

fn blk(vm: &vcpu_kvm::KvmVm, file: &TempPath, read_only: bool) -> MmioTransport {
    MmioTransport::new(vm, BASE, 5, Box::new(Block::open(&file.0, read_only).unwrap())).unwrap()
}

/// A disk image of `sectors` sectors, sector `n` filled with byte `n`.
fn image(name: &str, sectors: usize) -> TempPath {
    let file = TempPath::new(name);
    let bytes: Vec<u8> = (0..sectors).flat_map(|n| vec![n as u8; 512]).collect();
    std::fs::write(&file.0, bytes).unwrap();
    file
}

/// A block request: header at BUFFERS, data at BUFFERS + 0x1000, status at + 0x3000.
fn request(d: &mut Driver, kind: u32, sector: u64, len: u32, data_writable: bool) -> (Option<u32>, u8) {
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&kind.to_le_bytes());
    header[8..].copy_from_slice(&sector.to_le_bytes());
    d.vm.write(BUFFERS, &header).unwrap();
    d.vm.write(BUFFERS + 0x3000, &[0xee]).unwrap();
    d.set_desc(0, BUFFERS, 16, NEXT, 1);
    d.set_desc(
        1,
        BUFFERS + 0x1000,
        len,
        NEXT | if data_writable { WRITE } else { 0 },
        2,
    );
    d.set_desc(2, BUFFERS + 0x3000, 1, WRITE, 0);
    let used = d.submit(0);
    let mut status = [0u8];
    d.vm.read(BUFFERS + 0x3000, &mut status).unwrap();
    (used, status[0])
}

#[test]
fn a_block_device_reads_writes_flushes_and_names_itself() {
    let vm = irqchip_vm(4 << 20);
    let disk = image("rw", 8);
    let dev = blk(&vm, &disk, false);
    let mut d = Driver::new(&vm, &dev);
    assert_eq!(
        (d.read(0), d.read(4), d.read(8)),
        (0x7472_6976, 2, 2),
        "magic, version 2, a block device"
    );
    assert_eq!(d.read(0x100), 8, "capacity in sectors");
    d.start(0);
    assert_eq!(d.read(STATUS) & NEEDS_RESET, 0);

    // Read sector 3.
    assert_eq!(request(&mut d, 0, 3, 512, true), (Some(513), 0));
    let mut data = [0u8; 512];
    vm.read(BUFFERS + 0x1000, &mut data).unwrap();
    assert_eq!(data, [3u8; 512]);
    // Write sector 1, and see it in the file.
    vm.write(BUFFERS + 0x1000, &[0xab; 512]).unwrap();
    assert_eq!(request(&mut d, 1, 1, 512, false), (Some(1), 0));
    assert_eq!(std::fs::read(&disk.0).unwrap()[512..1024], [0xab; 512]);
    // Flush; get-id (the image's file name); an unknown request type.
    assert_eq!(request(&mut d, 4, 0, 0, true).1, 0);
    assert_eq!(request(&mut d, 8, 0, 20, true), (Some(21), 0));
    let mut id = [0u8; 8];
    vm.read(BUFFERS + 0x1000, &mut id).unwrap();
    assert!(disk
        .0
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(std::str::from_utf8(&id).unwrap().trim_end_matches('\0')));
    assert_eq!(request(&mut d, 99, 0, 512, true).1, 2, "UNSUPP");
    // Past the end of the disk, or not whole sectors: an I/O error, nothing moved.
    assert_eq!(request(&mut d, 0, 8, 512, true).1, 1);
    assert_eq!(request(&mut d, 0, u64::MAX / 256, 512, true).1, 1);
    assert_eq!(request(&mut d, 0, 0, 100, true).1, 1);
    assert_eq!(d.read(STATUS) & NEEDS_RESET, 0);
}

#[test]
fn a_read_only_disk_refuses_writes_and_says_so() {
    let vm = irqchip_vm(4 << 20);
    let disk = image("ro", 4);
    let dev = blk(&vm, &disk, true);
    let mut d = Driver::new(&vm, &dev);
    d.write(0x14, 0);
    assert_ne!(d.read(0x10) as u64 & RO_FEATURE, 0, "VIRTIO_BLK_F_RO offered");
    d.start(RO_FEATURE);
    vm.write(BUFFERS + 0x1000, &[0xcd; 512]).unwrap();
    assert_eq!(request(&mut d, 1, 0, 512, false).1, 1, "IOERR");
    assert_eq!(std::fs::read(&disk.0).unwrap()[..512], [0u8; 512]);
    assert_eq!(request(&mut d, 0, 2, 512, true).1, 0, "reads still work");
}

#[test]
fn an_image_whose_size_is_not_whole_sectors_is_refused() {
    let file = TempPath::new("odd");
    std::fs::write(&file.0, [0u8; 1000]).unwrap();
    let e = Block::open(&file.0, false).err().unwrap();
    assert_eq!(e.errno_value(), Some(libc::EINVAL));
    assert!(e.message().contains("not a multiple of 512"));
    let e = Block::open(std::path::Path::new("/nonexistent/disk.img"), false)
        .err()
        .unwrap();
    assert_eq!(e.errno_value(), Some(libc::ENOENT));
}

#[test]
fn an_entropy_device_fills_what_it_is_given() {
    let vm = irqchip_vm(4 << 20);
    let dev = MmioTransport::new(&vm, BASE, 5, Box::new(Rng::default())).unwrap();
    let mut d = Driver::new(&vm, &dev);
    assert_eq!(d.read(8), 4);
    d.start(0);
    d.set_desc(0, BUFFERS, 64, WRITE, 0);
    assert_eq!(d.submit(0), Some(64));
    let mut a = [0u8; 64];
    vm.read(BUFFERS, &mut a).unwrap();
    assert_eq!(d.submit(0), Some(64));
    let mut b = [0u8; 64];
    vm.read(BUFFERS, &mut b).unwrap();
    assert_ne!(a, [0u8; 64]);
    assert_ne!(a, b);
}

#[test]
fn a_malicious_driver_gets_needs_reset_or_dropped_requests_never_a_crash() {
    let vm = irqchip_vm(4 << 20);
    let disk = image("hostile", 8);
    let dev = blk(&vm, &disk, false);

    // A queue size that is not a power of two.
    let mut d = Driver::new(&vm, &dev);
    d.negotiate(0);
    d.queue(3);
    assert_ne!(d.read(STATUS) & NEEDS_RESET, 0);

    // Notifying before DRIVER_OK: nothing happens.
    let mut d = Driver::new(&vm, &dev);
    d.negotiate(0);
    d.queue(16);
    d.set_desc(0, BUFFERS, 16, 0, 0);
    assert_eq!(d.submit(0), None);

    // Features the device never offered: FEATURES_OK does not stick.
    assert_eq!(Driver::new(&vm, &dev).negotiate(1 << 40) & FEATURES_OK, 0);

    // Rings outside guest memory at DRIVER_OK.
    let d = Driver::new(&vm, &dev);
    d.negotiate(0);
    d.write(0x30, 0);
    d.write(0x38, 16);
    d.write(0x80, 0);
    d.write(0x84, 0x10);
    d.write(0x44, 1);
    d.write(STATUS, 3 | FEATURES_OK | DRIVER_OK);
    assert_ne!(d.read(STATUS) & NEEDS_RESET, 0);

    // Configuration space: a write past its end is dropped, a read past it is zero.
    let mut d = Driver::new(&vm, &dev);
    d.start(0);
    d.write(0x100 + 0x400, 0xffff_ffff);
    assert_eq!(d.read(0x100 + 0x400), 0);
    assert_eq!(d.read(0x100), 8);

    // Bad chains: each request is dropped (used, length 0) and the device goes on.
    let bad_chains: [&dyn Fn(&Driver); 5] = [
        // A descriptor loop.
        &|d| d.set_desc(0, BUFFERS, 16, NEXT, 0),
        // A chain longer than the queue (every descriptor points to the next, cyclically).
        &|d| (0..16).for_each(|i| d.set_desc(i, BUFFERS, 16, NEXT, (i + 1) % 16)),
        // Addresses outside guest memory.
        &|d| {
            d.set_desc(0, 0xffff_ffff_0000, 16, NEXT, 1);
            d.set_desc(1, BUFFERS, 1, WRITE, 0);
        },
        // More than 4 GiB in one chain.
        &|d| {
            d.set_desc(0, BUFFERS, 16, NEXT, 1);
            d.set_desc(1, BUFFERS, u32::MAX, NEXT | WRITE, 2);
            d.set_desc(2, BUFFERS, u32::MAX, WRITE, 0);
        },
        // A next index past the queue.
        &|d| d.set_desc(0, BUFFERS, 16, NEXT, 999),
    ];
    for (i, set) in bad_chains.iter().enumerate() {
        vm.write(BUFFERS, &[0u8; 16]).unwrap();
        set(&d);
        let used = d.submit(0);
        assert!(used.is_some_and(|n| n <= 1), "bad chain {i}: {used:?}");
        assert_eq!(d.read(STATUS) & NEEDS_RESET, 0, "bad chain {i}");
    }
    // Still serves a good request afterwards.
    assert_eq!(request(&mut d, 0, 2, 512, true), (Some(513), 0));

    // An available index more than a queue ahead.
    d.set_avail_idx(d.used_idx().wrapping_add(100));
    d.write(0x50, 0);
    assert_ne!(d.read(STATUS) & NEEDS_RESET, 0);
    // Only a reset brings it back.
    let mut d = Driver::new(&vm, &dev);
    d.start(0);
    assert_eq!(d.read(STATUS) & NEEDS_RESET, 0);
    assert_eq!(request(&mut d, 0, 5, 512, true), (Some(513), 0));
}

#[test]
fn registers_answer_only_in_their_window_and_only_at_their_width() {
    let vm = irqchip_vm(4 << 20);
    let dev = MmioTransport::new(&vm, BASE, 5, Box::new(Rng::default())).unwrap();
    let mut b = [0u8; 4];
    assert!(!dev.handle(vcpu_kvm::IoParams {
        address: BASE + 0x1000,
        operation: vcpu_kvm::IoOperation::Read(&mut b),
    }));
    let mut two = [0u8; 2];
    assert!(dev.handle(vcpu_kvm::IoParams {
        address: BASE,
        operation: vcpu_kvm::IoOperation::Read(&mut two),
    }));
    assert_eq!(two, [0, 0], "a 2-byte register read gets nothing");
    assert_eq!(dev.cmdline(), "virtio_mmio.device=4K@0xd0000000:5");
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The device's side of virtio-blk reads, as `bench/virtio.js` reports it: batches of
/// requests of `size` bytes at `offsets`, served by the transport's `serve` on this
/// thread (what the device thread runs), against `pread`s of the same offsets.
fn bench_reads(name: &str, size: u32, offsets: &[u64]) -> String {
    use std::os::unix::fs::FileExt;
    const BATCH: u16 = 64;
    let disk_mib = 64;
    let file = TempPath::new(&format!("bench-{name}"));
    std::fs::write(&file.0, vec![0x5a; disk_mib << 20]).unwrap();
    let vm = irqchip_vm(64 << 20);
    let dev = MmioTransport::new(&vm, BASE, 5, Box::new(Block::open(&file.0, false).unwrap())).unwrap();
    let mut d = Driver::new(&vm, &dev);
    assert_ne!(d.negotiate(0) & FEATURES_OK, 0);
    d.queue(256);
    d.write(STATUS, 3 | FEATURES_OK | DRIVER_OK);
    const DATA: u64 = 0x40_0000;
    let (mut cpu, mut wall, mut done) = (0u64, std::time::Duration::ZERO, 0usize);
    for batch in offsets.chunks(BATCH as usize) {
        for (i, &at) in batch.iter().enumerate() {
            let i = i as u16;
            let mut header = [0u8; 16];
            header[8..].copy_from_slice(&(at / 512).to_le_bytes());
            vm.write(BUFFERS + i as u64 * 16, &header).unwrap();
            d.set_desc(3 * i, BUFFERS + i as u64 * 16, 16, NEXT, 3 * i + 1);
            d.set_desc(3 * i + 1, DATA + i as u64 * size as u64, size, NEXT | WRITE, 3 * i + 2);
            d.set_desc(3 * i + 2, BUFFERS + 0x2000 + i as u64, 1, WRITE, 0);
            d.set_avail(d.used_idx().wrapping_add(i), 3 * i);
        }
        d.set_avail_idx(d.used_idx().wrapping_add(batch.len() as u16));
        let (c0, w0) = (thread_cpu_ns(), std::time::Instant::now());
        d.write(0x50, 0);
        cpu += thread_cpu_ns() - c0;
        wall += w0.elapsed();
        done += batch.len();
    }
    assert_eq!(d.read(STATUS) & NEEDS_RESET, 0);
    // The same reads with pread alone.
    let f = std::fs::File::open(&file.0).unwrap();
    let mut buf = vec![0u8; size as usize];
    let c0 = thread_cpu_ns();
    for &at in offsets {
        f.read_exact_at(&mut buf, at).unwrap();
    }
    let pread = thread_cpu_ns() - c0;
    format!(
        "{{\"name\":\"{name}\",\"size\":{size},\"requests\":{done},\"requestsPerSec\":{:.0},\"mbPerSec\":{:.1},\"deviceCpuNsPerRequest\":{:.0},\"preadCpuNsPerRequest\":{:.0}}}",
        done as f64 / wall.as_secs_f64(),
        done as f64 * size as f64 / wall.as_secs_f64() / 1e6,
        cpu as f64 / done as f64,
        pread as f64 / done as f64,
    )
}

/// `cargo test --release --test virtio -- --ignored --nocapture bench` (bench/virtio.js).
#[test]
#[ignore]
fn bench_virtio_blk() {
    let sectors = (64u64 << 20) / 4096;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u64> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % sectors) * 4096
        })
        .collect();
    let sequential: Vec<u64> = (0..2_000u64).map(|i| (i * (64 << 10)) % (64 << 20)).collect();
    println!("BENCH {}", bench_reads("random-4k", 4096, &random));
    println!("BENCH {}", bench_reads("sequential-64k", 64 << 10, &sequential));
}
