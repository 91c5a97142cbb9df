//! Fuzz targets (bolero) for what a file or a guest hands the host:
//!
//! - `snapshot_file`: snapshot decoding, from raw files and from edits of real
//!   snapshots (full, diff, signed) with their checksums fixed up;
//! - `hypercall_buffers`: the hypercall ABI's buffer helpers, a guest's pointer and
//!   length arguments read from guest memory as `readBuffer` does;
//! - `virtio_queues`: a virtio driver's descriptor tables and available rings, random,
//!   served by virtio-blk and virtio-rng through the MMIO transport.
//!
//! Under plain `cargo test` each target replays its regression corpus
//! (`tests/__fuzz__/<target>/corpus/`, one input per file) and then random inputs for
//! `VCPU_FUZZ_TARGET_SECONDS` seconds (default 2); `npm run fuzz:targets` runs them
//! longer. Each prints how many inputs it ran. Every input must end in a value or a
//! `VcpuError` with the documented code: never a panic, an abort or a hang.

mod common;

#[path = "common/virtio_driver.rs"]
mod virtio_driver;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use vcpu_kvm::kvm::{SnapshotOptions, MAX_COPY};
use vcpu_kvm::{HypercallAbi, Kvm, KvmVm, Vcpu, VcpuExit};

fn budget() -> Duration {
    let secs = std::env::var("VCPU_FUZZ_TARGET_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    Duration::from_secs(secs)
}

/// Where the targets write their files: memory-backed when the host has /dev/shm.
fn scratch_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
    let dir = base.join(format!("vcpu-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const KEY: &[u8] = b"the fuzz target's signing key";

/// Real snapshots of the counting guest: a full one, a diff of it, a signed one.
struct Bases {
    full: Vec<u8>,
    diff: Vec<u8>,
    signed: Vec<u8>,
    dir: PathBuf,
}

fn bases() -> &'static Bases {
    static BASES: OnceLock<Bases> = OnceLock::new();
    BASES.get_or_init(|| {
        let dir = scratch_dir();
        let (vm, vcpu) = long_mode("counter");
        let step = || {
            assert!(matches!(run_bounded(&vcpu, 10), Ok(VcpuExit::Io)));
            vcpu.handle_io(&mut |_| {}).unwrap();
        };
        step();
        let full = dir.join("base-full.snap");
        vm.snapshot(&full, false, None).unwrap();
        step();
        let diff = dir.join("base-diff.snap");
        vm.snapshot(&diff, true, None).unwrap();
        let signed = dir.join("base-signed.snap");
        let options = SnapshotOptions {
            key: Some(KEY),
            ..Default::default()
        };
        vm.snapshot_with(&signed, &options).unwrap();
        vm.close();
        Bases {
            full: std::fs::read(&full).unwrap(),
            diff: std::fs::read(&diff).unwrap(),
            signed: std::fs::read(&signed).unwrap(),
            dir,
        }
    })
}

/// A snapshot file from fuzz input. Byte 0 picks how the rest is read:
/// - even: the rest is the file, as is;
/// - odd: edits of a real snapshot (bit 1: the diff, bit 2: the signed one), six bytes
///   each: an operation, a little-endian u32 offset and a value. Operations (mod 4): set
///   a state byte, insert a state byte, delete a state byte, set a header byte. Unless
///   bit 3 is set, the state's length and CRC are fixed up afterwards; unless bit 4 is,
///   the header's CRC.
fn file_from(input: &[u8]) -> (Vec<u8>, bool) {
    let Some((&mode, rest)) = input.split_first() else {
        return (Vec::new(), false);
    };
    if mode & 1 == 0 {
        return (rest.to_vec(), false);
    }
    let b = bases();
    let signed = mode & 4 != 0;
    let base = match (mode & 2 != 0, signed) {
        (_, true) => &b.signed,
        (true, false) => &b.diff,
        (false, false) => &b.full,
    };
    let offset = u64::from_le_bytes(base[32..40].try_into().unwrap()) as usize;
    let (mut head, mut state) = (base[..offset].to_vec(), base[offset..].to_vec());
    for op in rest.chunks_exact(6) {
        let at = u32::from_le_bytes(op[1..5].try_into().unwrap()) as usize;
        let value = op[5];
        match op[0] % 4 {
            0 if !state.is_empty() => {
                let i = at % state.len();
                state[i] = value;
            }
            1 => state.insert(at % (state.len() + 1), value),
            2 if !state.is_empty() => {
                state.remove(at % state.len());
            }
            3 => head[at % 96] = value,
            _ => {}
        }
    }
    if mode & 8 == 0 {
        let len = state.len() as u64;
        head[40..48].copy_from_slice(&len.to_le_bytes());
        head[48..56].copy_from_slice(&(offset as u64 + len).to_le_bytes());
        head[56..60].copy_from_slice(&crc32fast::hash(&state).to_le_bytes());
    }
    if mode & 16 == 0 {
        let crc = crc32fast::hash(&head[..60]);
        head[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    head.extend_from_slice(&state);
    (head, signed)
}

#[test]
fn snapshot_file() {
    let kvm = Kvm::open(None).unwrap();
    let dir = bases().dir.clone();
    let path = dir.join("input.snap");
    let ran = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    bolero::check!().with_test_time(budget()).for_each(|input: &[u8]| {
        let (file, signed) = file_from(input);
        std::fs::write(&path, &file).unwrap();
        ran.fetch_add(1, Ordering::Relaxed);
        let key = signed.then_some(KEY);
        match kvm.restore_vm_with(&path, key) {
            Ok(vm) => {
                // Restored: its vcpu comes back or fails cleanly, and runs bounded.
                if let Ok(vcpu) = vm.create_vcpu(0) {
                    let _ = run_bounded(&vcpu, 2);
                }
                vm.close();
            }
            Err(e) => {
                refused.fetch_add(1, Ordering::Relaxed);
                assert!(
                    matches!(e.code_name().as_str(), "EINVAL" | "ENOENT"),
                    "{e} for input {input:02x?}"
                );
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "fuzz snapshot_file: {} inputs, {} refused",
        ran.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

/// The VM the buffer target reads: 2 MiB at 0 and a sparse 2 GiB at 4 GiB.
fn buffer_vm() -> &'static KvmVm {
    static VM: OnceLock<KvmVm> = OnceLock::new();
    VM.get_or_init(|| {
        let vm = Kvm::open(None).unwrap().create_vm(Default::default()).unwrap();
        vm.add_memory(0, 2 << 20, false, false).unwrap();
        vm.add_memory(4 << 30, 2 << 30, false, false).unwrap();
        vm
    })
}

/// Whether `[gpa, gpa + len)` lies inside one region of [`buffer_vm`].
fn inside(gpa: u64, len: u64) -> bool {
    let within = |start: u64, size: u64| gpa >= start && gpa.checked_add(len).is_some_and(|end| end <= start + size);
    within(0, 2 << 20) || within(4 << 30, 2 << 30)
}

#[test]
fn hypercall_buffers() {
    let vm = buffer_vm();
    let ran = AtomicU64::new(0);
    bolero::check!().with_test_time(budget()).for_each(|input: &[u8]| {
        // Six arguments, which two are the pointer and the length, and whether the
        // call reads or writes (as `readBuffer`/`writeBuffer` do with them).
        let mut words = input.chunks(8).map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        });
        let args: Vec<usize> = (&mut words).take(6).map(|w| w as usize).collect();
        let pick = words.next().unwrap_or(0);
        let abi = HypercallAbi::new(1, &args, &[usize::MAX]);
        let (Some(&ptr), Some(&len)) = (
            abi.get_argument((pick & 0xff) as usize % 8),
            abi.get_argument((pick >> 8 & 0xff) as usize % 8),
        ) else {
            return;
        };
        ran.fetch_add(1, Ordering::Relaxed);
        let (gpa, len) = (ptr as u64, len as u64);
        if pick >> 16 & 1 == 0 {
            let got = vm.read_vec(gpa, len as usize);
            let want = if len > 1 << 52 {
                "EINVAL"
            } else if !inside(gpa, len) {
                "EFAULT"
            } else if len as usize > MAX_COPY {
                "EINVAL"
            } else {
                "ok"
            };
            if want == "ok" && len > 16 << 20 {
                return; // a large copy that must succeed: slow, and the jest suite's
            }
            let code = match &got {
                Ok(b) if b.len() as u64 == len => "ok".to_string(),
                Ok(_) => "short".to_string(),
                Err(e) => e.code_name(),
            };
            assert_eq!(code, want, "read({gpa:#x}, {len:#x})");
        } else {
            // A write of the input's own bytes: its length is what the input holds.
            let data = &input[..input.len().min(len as usize)];
            let got = vm.write(gpa, data);
            let want = if inside(gpa, data.len() as u64) { "ok" } else { "EFAULT" };
            let code = got.map(|()| "ok".to_string()).unwrap_or_else(|e| e.code_name());
            assert_eq!(code, want, "write({gpa:#x})");
        }
    });
    eprintln!("fuzz hypercall_buffers: {} inputs", ran.load(Ordering::Relaxed));
}

/// A disk of 8 sectors and an entropy device, each on its transport, in one VM.
struct VirtioRig {
    vm: KvmVm,
    devices: [vcpu_kvm::vmm::virtio::MmioTransport; 2],
    _disk: TempPath,
}

fn virtio_rig() -> &'static VirtioRig {
    static RIG: OnceLock<VirtioRig> = OnceLock::new();
    RIG.get_or_init(|| {
        use vcpu_kvm::vmm::virtio::{Block, MmioTransport, Rng};
        let vm = irqchip_vm(4 << 20);
        let disk = TempPath::new("fuzz-disk");
        std::fs::write(&disk.0, vec![0x5a; 8 * 512]).unwrap();
        let blk = MmioTransport::new(&vm, 0xd000_0000, 5, Box::new(Block::open(&disk.0, false).unwrap())).unwrap();
        let rng = MmioTransport::new(&vm, 0xd000_1000, 6, Box::new(Rng::default())).unwrap();
        VirtioRig {
            vm,
            devices: [blk, rng],
            _disk: disk,
        }
    })
}

#[test]
fn virtio_queues() {
    use virtio_driver::*;
    let rig = virtio_rig();
    let ran = AtomicU64::new(0);
    let reset = AtomicU64::new(0);
    let outside = vec![0xa5u8; 4096];
    // Twice the others' time: a CI-sized run (2 s, debug build) serves 100k+ tables.
    bolero::check!().with_test_time(budget() * 2).for_each(|input: &[u8]| {
        // Byte 0: which device, and how many chains the available index offers (0 to
        // 16; an index further ahead is tests/virtio.rs's, as a device reset costs
        // milliseconds of KVM's ioeventfd bookkeeping); then up to 16 descriptors (16
        // bytes each, as the driver writes them), then the available ring's entries.
        let Some((&pick, rest)) = input.split_first() else {
            return;
        };
        let which = (pick & 1) as usize;
        let mut d = Driver::with_rings_at(&rig.vm, &rig.devices[which], which as u64 * 0x8000);
        if d.read(STATUS) & DRIVER_OK == 0 || d.read(STATUS) & NEEDS_RESET != 0 {
            reset.fetch_add(1, Ordering::Relaxed);
            d.start(0);
        }
        let (table, ring) = rest.split_at(rest.len().min(16 * 16));
        let mut desc = [0u8; 16 * 16];
        desc[..table.len()].copy_from_slice(table);
        // Buffers point anywhere; what lies outside RAM must stay untouched, and the
        // page after the rings is a canary for writes the driver did not ask for.
        d.set_table(&desc);
        rig.vm.write(BUFFERS + 0x10_0000, &outside).unwrap();
        let used_before = d.used_idx();
        for (i, e) in ring.chunks(2).take(16).enumerate() {
            let head = u16::from_le_bytes([e[0], *e.get(1).unwrap_or(&0)]);
            d.set_avail(used_before.wrapping_add(i as u16), head);
        }
        let ahead = (pick >> 1) as u16 % 17;
        d.set_avail_idx(used_before.wrapping_add(ahead));
        d.write(0x50, 0);
        ran.fetch_add(1, Ordering::Relaxed);
        let status = d.read(STATUS);
        assert_eq!(status & NEEDS_RESET, 0, "bad chains are dropped, not fatal");
        assert_eq!(
            d.used_idx(),
            used_before.wrapping_add(ahead),
            "every available chain used"
        );
        let mut canary = vec![0u8; 4096];
        rig.vm.read(BUFFERS + 0x10_0000, &mut canary).unwrap();
        let in_table = desc.chunks(16).any(|e| {
            let addr = u64::from_le_bytes(e[..8].try_into().unwrap());
            let len = u32::from_le_bytes(e[8..12].try_into().unwrap()) as u64;
            addr < BUFFERS + 0x10_1000 && addr.saturating_add(len) > BUFFERS + 0x10_0000
        });
        assert!(in_table || canary == outside, "a page no descriptor named was written");
    });
    eprintln!(
        "fuzz virtio_queues: {} descriptor tables, {} device resets",
        ran.load(Ordering::Relaxed),
        reset.load(Ordering::Relaxed)
    );
}
