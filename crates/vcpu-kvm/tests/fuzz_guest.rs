//! Hostile guests: random byte sequences run as guest code, in long and real mode.
//! Every run must end in a decoded exit or a clean error: never a panic, a crash or a
//! hang. Seeded and bounded; `VCPU_FUZZ_SEED=<n>` reproduces a run, `VCPU_FUZZ_RUNS`
//! sets how many programs each mode runs and `VCPU_FUZZ_SECONDS` how long each mode may
//! take (`npm run fuzz` runs 100 000 programs).

mod common;

use std::time::{Duration, Instant};

use common::*;
use kvm_bindings::kvm_regs;
use vcpu_kvm::{IoOperation, Kvm, KvmVcpu, Vcpu, VcpuExit, VmConfig};

/// xorshift64*: tiny, deterministic, good enough to make garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs until a terminal exit, at most `max_exits` exits and `budget` of time (after
/// which the watchdog kicks). Returns the exits seen.
fn run_garbage(vcpu: &KvmVcpu, rng: &mut Rng, max_exits: usize, budget: Duration) -> Vec<String> {
    let mut kinds = Vec::new();
    let deadline = Instant::now() + budget;
    for _ in 0..max_exits {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let exit = match run_bounded_for(vcpu, remaining) {
            Ok(exit) => exit,
            Err(e) => {
                // A clean error: EINTR from the watchdog, or the kernel refusing the run
                // (EFAULT for a guest that points KVM at unbacked memory, EINVAL, ...).
                assert!(
                    e.is_interrupted() || matches!(e.code_name().as_str(), "EFAULT" | "EINVAL" | "ENOEXEC" | "EIO"),
                    "unexpected error from a garbage guest: {e:?}"
                );
                kinds.push(format!("error {}", e.code_name()));
                break;
            }
        };
        kinds.push(exit.kind().to_string());
        let mut fill = rng.next();
        let handled = match exit {
            VcpuExit::Io => vcpu.handle_io(&mut |p| {
                if let IoOperation::Read(d) = p.operation {
                    d.copy_from_slice(&fill.to_le_bytes()[..d.len()]);
                    fill = fill.rotate_left(8);
                }
            }),
            VcpuExit::Mmio => vcpu.handle_mmio(&mut |p| {
                if let IoOperation::Read(d) = p.operation {
                    d.copy_from_slice(&fill.to_le_bytes()[..d.len()]);
                }
                Ok(())
            }),
            VcpuExit::Hypercall => vcpu.handle_hypercall(&mut |abi| {
                abi.set_results(&[fill as usize]);
                Ok(())
            }),
            _ => break,
        };
        handled.expect("handling a decoded exit");
    }
    kinds
}

fn fuzz(real_mode: bool) {
    let seed = env_u64("VCPU_FUZZ_SEED", 0x5eed_0001) ^ real_mode as u64;
    let runs = env_u64("VCPU_FUZZ_RUNS", 150);
    let seconds = env_u64("VCPU_FUZZ_SECONDS", 60);
    let mut rng = Rng(seed | 1);
    let kvm = Kvm::open(None).unwrap();
    let vm = kvm.create_vm(VmConfig::default()).unwrap();
    vm.add_memory(0, RAM_SIZE, false, false).unwrap();
    // A read-only page and a hole, for the garbage to stumble into.
    vm.add_memory(0x40_0000, 0x1000, true, false).unwrap();
    // One vcpu for all programs (KVM never frees a vcpu id): each program starts from
    // the same saved state.
    let vcpu = vm.create_vcpu(0).unwrap();
    if real_mode {
        start_in_real_mode(&vcpu, LOAD_ADDR);
    } else {
        vcpu.setup_long_mode().unwrap();
    }
    let (sregs, events, fpu) = (
        vcpu.get_sregs().unwrap(),
        vcpu.get_vcpu_events().unwrap(),
        vcpu.get_fpu().unwrap(),
    );
    let started = Instant::now();
    let mut tally = std::collections::BTreeMap::new();
    let mut ran = 0;
    for i in 0..runs {
        ran = i + 1;
        let len = 1 + (rng.next() % 64) as usize;
        let code: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        vm.write(LOAD_ADDR, &code).unwrap();
        if !real_mode {
            vcpu.setup_long_mode().unwrap(); // the garbage may have scribbled on the tables
        }
        vcpu.set_sregs(&sregs).unwrap();
        vcpu.set_vcpu_events(&events).unwrap();
        vcpu.set_fpu(&fpu).unwrap();
        let regs = kvm_regs {
            rip: LOAD_ADDR,
            rsp: 0x8000,
            rflags: 2,
            rax: rng.next(),
            rbx: rng.next() % (8 << 20),
            rcx: rng.next() % 64,
            rsi: rng.next() % (8 << 20),
            rdi: rng.next() % (8 << 20),
            ..Default::default()
        };
        vcpu.set_regs(&regs).unwrap();
        let kinds = run_garbage(&vcpu, &mut rng, 32, Duration::from_millis(200));
        for k in kinds {
            *tally.entry(k).or_insert(0) += 1;
        }
        // Keep the suite bounded on slow (emulating) hosts.
        if started.elapsed() > Duration::from_secs(seconds) {
            eprintln!("fuzz: time bound reached after {} programs", i + 1);
            break;
        }
    }
    eprintln!(
        "fuzz ({}, seed {seed:#x}, {} programs in {:.1} s): {tally:?}",
        if real_mode { "real mode" } else { "long mode" },
        ran,
        started.elapsed().as_secs_f64()
    );
    // The VM is still sound afterwards.
    vm.write(LOAD_ADDR, &guest("hlt")).unwrap();
    let vcpu = vm.create_vcpu(1).unwrap();
    vcpu.setup_long_mode().unwrap();
    vcpu.set_regs(&kvm_regs {
        rip: LOAD_ADDR,
        rflags: 2,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(run_bounded(&vcpu, 10).unwrap(), VcpuExit::Hlt);
}

#[test]
fn random_code_in_long_mode_ends_cleanly() {
    fuzz(false);
}

#[test]
fn random_code_in_real_mode_ends_cleanly() {
    fuzz(true);
}
