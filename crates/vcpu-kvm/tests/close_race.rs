//! Closing a VM while its vcpus run on other threads, and kicks that must reach a vcpu
//! run again and again from new threads. `CLOSE_RACE_ROUNDS` sets the rounds (fewer under
//! valgrind: `scripts/memcheck.sh`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{guest, LOAD_ADDR, RAM_SIZE};
use vcpu_kvm::{ErrorCode, Kvm, KvmVcpu, Vcpu, VcpuExit, VmConfig};

fn rounds(default: usize) -> usize {
    std::env::var("CLOSE_RACE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

#[test]
fn closing_the_vm_while_vcpus_run_on_four_threads() {
    let kvm = Kvm::open(None).unwrap();
    for round in 0..rounds(200) {
        let vm = kvm.create_vm(VmConfig::default()).unwrap();
        vm.add_memory(0, RAM_SIZE, false, false).unwrap();
        vm.write(LOAD_ADDR, &guest("spin")).unwrap();
        vm.write(0x2000, &guest("bench_pio_out")).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|id| {
                let vcpu: Arc<KvmVcpu> = vm.create_vcpu(id).unwrap();
                vcpu.setup_long_mode_at(if id % 2 == 0 { LOAD_ADDR } else { 0x2000 }, 0x8000 - id as u64 * 0x100)
                    .unwrap();
                std::thread::spawn(move || loop {
                    match vcpu.run() {
                        Ok(VcpuExit::Io) => {
                            if let Err(e) = vcpu.handle_io(&mut |_| {}) {
                                return format!("{:?}", e.code());
                            }
                        }
                        Ok(other) => return format!("{other:?}"),
                        Err(e) if e.is_interrupted() => return "Intr".to_string(),
                        Err(e) => return format!("{:?}", e.code()),
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros((round as u64 * 37) % 2000));
        vm.close();
        for t in threads {
            let seen = t.join().unwrap();
            assert!(
                seen == "Intr" || seen == format!("{:?}", ErrorCode::Closed),
                "round {round}: {seen}"
            );
        }
        assert!(vm.read(0, &mut [0u8; 1]).is_err(), "the memory is released");
    }
}

#[test]
fn a_kick_reaches_a_vcpu_run_from_a_new_thread_each_time() {
    let (vm, vcpu) = common::long_mode("spin");
    for round in 0..rounds(50) {
        let runner = {
            let vcpu = vcpu.clone();
            std::thread::spawn(move || vcpu.run().map(|_| ()).unwrap_err().is_interrupted())
        };
        std::thread::sleep(Duration::from_millis(2));
        let kicked = Instant::now();
        vcpu.signal_handle().kick();
        assert!(runner.join().unwrap(), "round {round}");
        assert!(kicked.elapsed() < Duration::from_secs(1), "round {round}");
    }
    vm.close();
}
