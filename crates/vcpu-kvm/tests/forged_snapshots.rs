//! Snapshot files as an attacker writes them: every length a file declares is bounded
//! before anything is allocated for it (each forged file below is refused with `EINVAL`
//! for a few MiB and milliseconds at most), and a signed file cannot be changed by
//! anyone without its key, not even where its CRCs would still match.
//!
//! The forged-file matrix measures the process's peak memory, so the tests here take
//! turns.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use vcpu_kvm::kvm::SnapshotOptions;
use vcpu_kvm::Kvm;

/// The tests of this file take turns: the matrix measures the process's peak memory.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// What refusing one forged file may cost.
const MAX_PEAK_GROWTH: u64 = 8 << 20;
const MAX_TIME: Duration = Duration::from_millis(250);

/// A snapshot file's bytes, and how to forge them with every checksum fixed up (the
/// header layout is in `src/kvm/snapshot/format.rs`).
struct Snap(Vec<u8>);

impl Snap {
    fn load(path: &Path) -> Snap {
        Snap(std::fs::read(path).unwrap())
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().unwrap())
    }

    fn state(&self) -> &[u8] {
        &self.0[self.u64_at(32) as usize..]
    }

    /// The file with `header` changed by `edit`, its own CRC fixed.
    fn with_header(&self, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut bytes = self.0.clone();
        edit(&mut bytes[..64]);
        let crc = crc32fast::hash(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// The file with `state` instead of its own: lengths and both CRCs fixed.
    fn with_state(&self, state: &[u8]) -> Vec<u8> {
        let offset = self.u64_at(32);
        let mut bytes = self.0[..offset as usize].to_vec();
        bytes.extend_from_slice(state);
        let file = Snap(bytes);
        file.with_header(|h| {
            h[40..48].copy_from_slice(&(state.len() as u64).to_le_bytes());
            h[48..56].copy_from_slice(&(offset + state.len() as u64).to_le_bytes());
            h[56..60].copy_from_slice(&crc32fast::hash(state).to_le_bytes());
        })
    }
}

/// A bincode varint holding `n` as a full u64 (tag 253).
fn varint_u64(n: u64) -> Vec<u8> {
    let mut v = vec![253];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// The process's peak resident memory (VmHWM), after resetting it to the current.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    peak()
}

fn peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn every_forged_file_is_refused_for_a_few_mib_and_milliseconds() {
    let _turn = one_at_a_time();
    let kvm = Kvm::open(None).unwrap();
    let (vm, vcpu) = long_mode("counter");
    next_count(&vcpu);
    let full_path = TempPath::new("full");
    vm.snapshot(&full_path.0, false, None).unwrap();
    next_count(&vcpu);
    let diff_path = TempPath::new("diff");
    vm.snapshot(&diff_path.0, true, None).unwrap();
    vm.close();
    let full = Snap::load(&full_path.0);
    let diff = Snap::load(&diff_path.0);

    // Where the state keeps what is forged below (bincode varints): the VM options take
    // 6 bytes (irqchip, Some(0x500), userspace MSRs), then the base (None: 1 byte), the
    // region count, and the one region's slot, address and size, 2 MiB at 10..15.
    let state = full.state();
    assert_eq!(state[6], 0, "full snapshot: no base");
    assert_eq!(&state[10..15], &[252, 0, 0, 0x20, 0], "the region's size, 2 MiB");
    let with_region_size = |size: u64| {
        let mut s = state[..10].to_vec();
        s.extend(varint_u64(size));
        s.extend_from_slice(&state[15..]);
        full.with_state(&s)
    };
    // A diff's base: Some, then its path's length.
    let dstate = diff.state();
    assert_eq!(dstate[6], 1, "a diff names its base");
    let path_len = dstate[7] as usize;
    assert!(path_len < 251, "a one-byte path length");
    let huge_base_path = {
        let mut s = dstate[..7].to_vec();
        s.extend(varint_u64(1 << 40));
        s.extend_from_slice(&dstate[8..]);
        diff.with_state(&s)
    };
    let irqchip_flag = {
        let mut s = state.to_vec();
        s[0] = 1;
        full.with_state(&s)
    };

    // (name, file bytes, length to give the file (sparse), what the error names)
    let state_at = full.u64_at(32);
    let claim = |len: u64| {
        full.with_header(|h| {
            h[40..48].copy_from_slice(&len.to_le_bytes());
            h[48..56].copy_from_slice(&(state_at + len).to_le_bytes());
        })
    };
    let cases: Vec<(&str, Vec<u8>, Option<u64>, &str)> = vec![
        (
            "a 4 KiB file claiming a 256 GiB state",
            claim(1 << 38)[..4096].to_vec(),
            None,
            "truncated",
        ),
        (
            "a sparse file claiming a 256 GiB state",
            claim(1 << 38),
            Some(state_at + (1 << 38)),
            "state length",
        ),
        (
            "a sparse file claiming a 2 GiB state",
            claim(2 << 30),
            Some(state_at + (2 << 30)),
            "state length",
        ),
        (
            "a sparse file with a 60 MiB state of nothing",
            claim(60 << 20),
            Some(state_at + (60 << 20)),
            "checksum",
        ),
        (
            "a diff whose base path is 2^40 bytes long",
            huge_base_path,
            None,
            "corrupt",
        ),
        (
            "a 1 TiB region",
            with_region_size(1 << 40),
            None,
            "more than this host has",
        ),
        ("a 2^52-byte region", with_region_size(1 << 52), None, "corrupt"),
        (
            "a region of 2^64 - 1 bytes",
            with_region_size(u64::MAX),
            None,
            "page-aligned range",
        ),
        (
            "irqchip claimed by a VM without its state",
            irqchip_flag,
            None,
            "irqchip",
        ),
    ];
    for (name, bytes, len, why) in cases {
        let file = TempPath::new("case");
        std::fs::write(&file.0, &bytes).unwrap();
        if let Some(len) = len {
            std::fs::File::options()
                .write(true)
                .open(&file.0)
                .unwrap()
                .set_len(len)
                .unwrap();
        }
        let before = reset_peak();
        let start = Instant::now();
        let err = kvm
            .restore_vm(&file.0)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        let took = start.elapsed();
        let grew = peak().saturating_sub(before);
        assert_eq!(err.code_name(), "EINVAL", "{name}: {err}");
        assert!(err.to_string().contains(why), "{name}: {err}");
        assert!(grew <= MAX_PEAK_GROWTH, "{name}: the peak grew by {grew} bytes");
        assert!(took <= MAX_TIME, "{name}: took {took:?}");
    }
}

#[test]
fn bit_flips_with_fixed_checksums_never_crash() {
    let _turn = one_at_a_time();
    let kvm = Kvm::open(None).unwrap();
    let (vm, vcpu) = long_mode("counter");
    next_count(&vcpu);
    let good = TempPath::new("flips");
    vm.snapshot(&good.0, false, None).unwrap();
    vm.close();
    let snap = Snap::load(&good.0);
    let state = snap.state().to_vec();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let file = TempPath::new("flip");
    for _ in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut s = state.clone();
        let at = (seed as usize) % s.len();
        s[at] ^= 1 << (seed >> 60 & 7);
        std::fs::write(&file.0, snap.with_state(&s)).unwrap();
        // Decoded or refused, never a crash; a VM that came back runs or fails cleanly.
        match kvm.restore_vm(&file.0) {
            Ok(vm) => {
                if let Ok(vcpu) = vm.create_vcpu(0) {
                    let _ = run_bounded(&vcpu, 2);
                }
            }
            Err(e) => assert_eq!(e.code_name(), "EINVAL", "{e}"),
        }
    }
}

/// Changes `page[at]` and four bytes at `fix` so that the CRC-32 of the page, and so of
/// any data that holds it, stays the same (CRC-32 is linear: anyone can do this).
fn change_keeping_crc(page: &mut [u8], at: usize, fix: usize) {
    let zero = vec![0u8; page.len()];
    let lin = |delta: &[u8]| crc32fast::hash(delta) ^ crc32fast::hash(&zero);
    let mut delta = zero.clone();
    delta[at] = 0x5a;
    let target = lin(&delta);
    // Solve sum(bit_j * lin(e_j)) = target over GF(2) for the 32 bits of the window.
    let mut rows: Vec<(u32, u32)> = (0..32)
        .map(|j| {
            let mut e = zero.clone();
            e[fix + j / 8] = 1 << (j % 8);
            (lin(&e), 1u32 << j)
        })
        .collect();
    let (mut want, mut chosen) = (target, 0u32);
    for bit in (0..32).rev() {
        let Some(pivot) = rows.iter().position(|r| r.0 >> bit & 1 == 1) else {
            continue;
        };
        let p = rows.swap_remove(pivot);
        for r in rows.iter_mut() {
            if r.0 >> bit & 1 == 1 {
                r.0 ^= p.0;
                r.1 ^= p.1;
            }
        }
        if want >> bit & 1 == 1 {
            want ^= p.0;
            chosen ^= p.1;
        }
    }
    assert_eq!(want, 0, "the window spans the CRC");
    page[at] ^= 0x5a;
    for j in 0..32 {
        if chosen >> j & 1 == 1 {
            page[fix + j / 8] ^= 1 << (j % 8);
        }
    }
}

#[test]
fn a_signed_snapshot_restores_only_with_its_key_and_unchanged() {
    let _turn = one_at_a_time();
    let kvm = Kvm::open(None).unwrap();
    let key = b"a key of the user's, 32 bytes...";
    let signed = |diff| SnapshotOptions {
        diff,
        devices: None,
        key: Some(key),
    };
    let (vm, vcpu) = long_mode("counter");
    assert_eq!(next_count(&vcpu), 1);
    let file = TempPath::new("signed");
    vm.snapshot_with(&file.0, &signed(false)).unwrap();
    assert_eq!(next_count(&vcpu), 2);
    let diff = TempPath::new("signed-diff");
    vm.snapshot_with(&diff.0, &signed(true)).unwrap();
    vm.close();

    let restore = |path: &Path, key: Option<&[u8]>| kvm.restore_vm_with(path, key);
    let resumes = |vm: vcpu_kvm::KvmVm, want| assert_eq!(next_count(&vm.create_vcpu(0).unwrap()), want);
    resumes(restore(&file.0, Some(key)).unwrap(), 2);
    resumes(restore(&diff.0, Some(key)).unwrap(), 3);
    // Without a key the file is trusted input, as an unsigned one.
    resumes(restore(&file.0, None).unwrap(), 2);

    let refused = |path: &Path, key: Option<&[u8]>, why: &str| {
        let err = restore(path, key).err().expect("accepted");
        assert_eq!(err.code_name(), "EINVAL", "{err}");
        assert!(err.to_string().contains(why), "{err}");
    };
    refused(&file.0, Some(b"another key"), "signature");
    assert_eq!(restore(&file.0, Some(b"")).err().unwrap().code_name(), "EINVAL");
    let unsigned = TempPath::new("unsigned");
    let (vm2, _v) = long_mode("counter");
    vm2.snapshot(&unsigned.0, false, None).unwrap();
    refused(&unsigned.0, Some(key), "not signed");

    // The guest's code page changed so that every CRC still matches: an unsigned
    // restore cannot tell; the signed one refuses it before anything is mapped.
    let snap = Snap::load(&file.0);
    let mut bytes = snap.0.clone();
    let code = 4096 + LOAD_ADDR as usize;
    change_keeping_crc(&mut bytes[code..code + 4096], 0x10, 0x800);
    let tampered = TempPath::new("tampered");
    std::fs::write(&tampered.0, &bytes).unwrap();
    assert!(restore(&tampered.0, None).is_ok(), "CRCs alone cannot see it");
    refused(&tampered.0, Some(key), "was changed");
    // The state changed with its CRCs fixed: the tag no longer holds.
    let mut state = snap.state().to_vec();
    state[2] ^= 1;
    std::fs::write(&tampered.0, snap.with_state(&state)).unwrap();
    refused(&tampered.0, Some(key), "signature");
}
