//! The native floor for the benchmarks in `bench/`: the same exits handled by a pure
//! Rust loop over `vcpu-kvm`, so JS figures can be compared with it in the same process
//! and run.

use std::time::Instant;

use vcpu_kvm::{IoOperation, Kvm, KvmVcpu, Result, Vcpu, VcpuExit, VmConfig};

/// Runs `n` exits of whatever kind the guest makes, handling each the way a minimal
/// device would (reads answer 1, hypercalls return argument 0 + 1), and returns the
/// elapsed nanoseconds.
pub fn exit_loop(vcpu: &KvmVcpu, n: u64) -> Result<u64> {
    let start = Instant::now();
    for _ in 0..n {
        let exit = vcpu.run_until_settled(&|| true, || vcpu.run(), VcpuExit::Intr)?;
        match exit {
            VcpuExit::Io => vcpu.handle_io(&mut |p| {
                if let IoOperation::Read(d) = p.operation {
                    d[0] = 1;
                }
            })?,
            VcpuExit::Mmio => vcpu.handle_mmio(&mut |p| {
                if let IoOperation::Read(d) = p.operation {
                    d[0] = 1;
                }
                Ok(())
            })?,
            VcpuExit::Hypercall => vcpu.handle_hypercall(&mut |abi| {
                let a = abi.get_argument(0).copied().unwrap_or(0);
                abi.set_results(&[a + 1]);
                Ok(())
            })?,
            other => return Err(vcpu_kvm::Error::invalid("bench", format!("unexpected exit {other:?}"))),
        }
    }
    Ok(start.elapsed().as_nanos() as u64)
}

/// `Kvm::open` → VM + 2 MiB RAM + vcpu in long mode → first exit (`hlt` at 0x1000),
/// `iterations` times; the nanoseconds of each.
pub fn startup(iterations: u32) -> Result<Vec<u64>> {
    (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let kvm = Kvm::open(None)?;
            let vm = kvm.create_vm(VmConfig::default())?;
            vm.add_memory(0, 2 << 20, false, false)?;
            vm.write(0x1000, &[0xf4])?;
            let vcpu = vm.create_vcpu(0)?;
            vcpu.setup_long_mode()?;
            let regs = vcpu_kvm::kvm_bindings::kvm_regs {
                rip: 0x1000,
                rflags: 2,
                ..Default::default()
            };
            vcpu.set_regs(&regs)?;
            let exit = vcpu.run()?;
            let elapsed = start.elapsed().as_nanos() as u64;
            if exit != VcpuExit::Hlt {
                return Err(vcpu_kvm::Error::invalid("bench", format!("unexpected exit {exit:?}")));
            }
            vm.close();
            Ok(elapsed)
        })
        .collect()
}
