//! x86-64 specifics of the KVM backend: VM and vcpu setup, the exits only x86 has, and
//! the port-I/O hypercall ABI. Register state is in `state`, debugging in `debug`.

mod debug;
mod interrupts;
mod long_mode;
mod msr_exits;
mod snapshot;
mod state;

pub use msr_exits::MsrAccess;

pub use debug::GuestDebug;
pub(crate) use snapshot::{
    reset_vcpu, reset_vm, restore_vcpu, restore_vm, save_vcpu, save_vm, VcpuSnapshot, VmSnapshot,
};

use std::sync::OnceLock;

use kvm_bindings::*;
use kvm_ioctls::{VcpuFd, VmFd};

use super::vcpu::KvmVcpu;
use super::{Kvm, VmConfig};
use crate::arch::x86_64::layout;
use crate::error::{Context, Result};
use crate::record::Pending;
use crate::{HypercallAbi, Vcpu, VcpuExit};

/// The sync-register sets we ask KVM to copy into `kvm_run` on every exit.
pub(crate) const SYNC_REGS_WANTED: i32 = KVM_SYNC_X86_REGS as i32;

/// Port-I/O hypercall ABI: registers holding arguments 0..6.
pub const HYPERCALL_ARG_REGS: [&str; 6] = ["rbx", "rcx", "rsi", "rdi", "r8", "r9"];
/// Port-I/O hypercall ABI: registers receiving results 0..4.
pub const HYPERCALL_RESULT_REGS: [&str; 4] = ["rax", "rbx", "rcx", "rdx"];

/// What x86 keeps per VM.
pub(crate) struct VmArch {
    /// The host's supported CPUID, which each new vcpu starts with.
    cpuid: &'static CpuId,
    /// The MSRs a snapshot saves.
    saveable_msrs: &'static [u32],
}

/// Places KVM's TSS and identity map, creates the irqchip and PIT if asked, and sends
/// unknown MSRs to userspace if asked.
pub(crate) fn init_vm(kvm: &Kvm, fd: &VmFd, config: &VmConfig) -> Result<VmArch> {
    fd.set_tss_address(layout::KVM_TSS_ADDR as usize).op("createVm")?;
    fd.set_identity_map_address(layout::KVM_IDENTITY_MAP_ADDR)
        .op("createVm")?;
    if config.userspace_msr {
        let cap = kvm_enable_cap {
            cap: KVM_CAP_X86_USER_SPACE_MSR,
            args: [KVM_MSR_EXIT_REASON_UNKNOWN.into(), 0, 0, 0],
            ..Default::default()
        };
        fd.enable_cap(&cap).op("createVm")?;
    }
    if config.irqchip {
        fd.create_irq_chip().op("createVm")?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).op("createVm")?;
    }
    Ok(VmArch {
        cpuid: supported_cpuid(kvm)?,
        saveable_msrs: snapshot::saveable_msrs(kvm)?,
    })
}

/// The host's supported CPUID, asked once per process (it does not change).
pub(crate) fn supported_cpuid(kvm: &Kvm) -> Result<&'static CpuId> {
    static CPUID: OnceLock<CpuId> = OnceLock::new();
    if let Some(c) = CPUID.get() {
        return Ok(c);
    }
    let c = kvm.fd().get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).op("createVm")?;
    Ok(CPUID.get_or_init(|| c))
}

/// Gives a new vcpu the host's CPUID (KVM checks long-mode EFER bits against it) and
/// turns on sync registers, so hypercalls need no extra ioctl. A vcpu `restoring` a
/// snapshot gets the snapshot's CPUID next instead (one `KVM_SET_CPUID2` fewer: it is
/// among the slowest vcpu ioctls).
pub(crate) fn init_vcpu(vcpu: &KvmVcpu, restoring: bool) -> Result<()> {
    if !restoring {
        let mut cpuid = vcpu.vm.shared().arch.cpuid.clone();
        let apic_id = vcpu.id() as u32;
        for entry in cpuid.as_mut_slice() {
            match entry.function {
                // The initial APIC id: each vcpu its own, as a kernel counting CPUs expects.
                1 => entry.ebx = (entry.ebx & 0x00ff_ffff) | (apic_id << 24),
                0xb | 0x1f => entry.edx = apic_id,
                _ => {}
            }
        }
        vcpu.fd.set_cpuid2(&cpuid).op("createVcpu")?;
    }
    if vcpu.vm.shared().sync_regs {
        vcpu.kvm_run().kvm_valid_regs = KVM_SYNC_X86_REGS as u64;
    }
    Ok(())
}

pub(crate) fn regs_pending_in_run(vcpu: &KvmVcpu) -> bool {
    vcpu.kvm_run().kvm_dirty_regs & KVM_SYNC_X86_REGS as u64 != 0
}

#[allow(clippy::mut_from_ref)] // part of kvm_run: see `KvmVcpu::kvm_run`
pub(crate) fn sync_regs(vcpu: &KvmVcpu) -> &mut kvm_regs {
    // SAFETY: `s.regs` is the sync-register area of our live kvm_run, plain old data.
    unsafe { &mut vcpu.kvm_run().s.regs.regs }
}

/// The call of a port-I/O hypercall: id written to the port; arguments in
/// [`HYPERCALL_ARG_REGS`]; results for [`HYPERCALL_RESULT_REGS`], where unset results
/// leave their register unchanged, except RAX, which defaults to `u64::MAX` (not
/// supported).
fn port_hypercall_abi(vcpu: &KvmVcpu, id: u64) -> Result<HypercallAbi> {
    let regs = if vcpu.vm.shared().sync_regs {
        *sync_regs(vcpu)
    } else {
        vcpu.get_regs()?
    };
    let args = [regs.rbx, regs.rcx, regs.rsi, regs.rdi, regs.r8, regs.r9].map(|r| r as usize);
    let defaults = [u64::MAX, regs.rbx, regs.rcx, regs.rdx].map(|r| r as usize);
    Ok(HypercallAbi::new(id as usize, &args, &defaults))
}

/// Writes a port-I/O hypercall's results into [`HYPERCALL_RESULT_REGS`]: through the
/// sync registers where KVM has them (no ioctl), else with `KVM_SET_REGS`.
pub(crate) fn write_hypercall_results(vcpu: &KvmVcpu, abi: &HypercallAbi) -> Result<()> {
    let sync = vcpu.vm.shared().sync_regs;
    let mut regs = if sync { *sync_regs(vcpu) } else { vcpu.get_regs()? };
    let results = abi.get_results();
    for (reg, value) in [&mut regs.rax, &mut regs.rbx, &mut regs.rcx, &mut regs.rdx]
        .into_iter()
        .zip(results)
    {
        *reg = *value as u64;
    }
    if sync {
        *sync_regs(vcpu) = regs;
        vcpu.kvm_run().kvm_dirty_regs |= KVM_SYNC_X86_REGS as u64;
        Ok(())
    } else {
        vcpu.set_regs(&regs)
    }
}

/// A `KVM_EXIT_HYPERCALL` (the few hypercalls KVM forwards on x86): its number and
/// arguments; the default result is the `ret` KVM put there.
pub(crate) fn kvm_hypercall(_vcpu: &KvmVcpu, run: &kvm_run) -> Option<HypercallAbi> {
    // SAFETY: called for KVM_EXIT_HYPERCALL, whose `hypercall` member is live.
    let hc = unsafe { &run.__bindgen_anon_1.hypercall };
    let args = hc.args.map(|a| a as usize);
    Some(HypercallAbi::new(hc.nr as usize, &args, &[hc.ret as usize]))
}

/// Writes a `KVM_EXIT_HYPERCALL`'s result where KVM returns it to the guest.
pub(crate) fn complete_kvm_hypercall(vcpu: &KvmVcpu, abi: &HypercallAbi) -> Result<()> {
    // SAFETY: the last exit was KVM_EXIT_HYPERCALL, so `hypercall` is live.
    let hc = unsafe { &mut vcpu.kvm_run().__bindgen_anon_1.hypercall };
    hc.ret = abi.get_results().first().copied().unwrap_or(0) as u64;
    Ok(())
}

/// A `KVM_EXIT_DEBUG` exit (the caller checked the exit reason).
pub(crate) fn debug_exit(run: &kvm_run) -> VcpuExit {
    // SAFETY: the exit reason is KVM_EXIT_DEBUG, whose `debug` member is plain old data.
    let arch = unsafe { run.__bindgen_anon_1.debug.arch };
    VcpuExit::Debug {
        exception: arch.exception,
        pc: arch.pc,
        dr6: arch.dr6,
        dr7: arch.dr7,
    }
}

/// A `KVM_EXIT_IO`: a port access, or a port-I/O hypercall.
#[inline]
pub(crate) fn decode_io(vcpu: &KvmVcpu, run: &kvm_run) -> VcpuExit {
    // SAFETY: called for KVM_EXIT_IO, whose `io` member is plain old data.
    let io = unsafe { run.__bindgen_anon_1.io };
    let is_write = io.direction == KVM_EXIT_IO_OUT as u8;
    let port = vcpu.vm.shared().config.hypercall_port;
    if is_write && io.count == 1 && Some(io.port) == port {
        return port_hypercall(vcpu, io.size, io.data_offset as usize);
    }
    let offset = io.data_offset as usize;
    vcpu.describe_access(Pending::Io, io.port.into(), io.size.into(), io.count, is_write, offset)
}

/// Decodes the exits only x86 has (`None` for a reason it does not know either).
pub(crate) fn decode_arch_exit(vcpu: &KvmVcpu, run: &mut kvm_run) -> Option<VcpuExit> {
    // SAFETY (every union read below): the exit reason names the active member, and
    // every member is plain old data, valid for any bit pattern.
    Some(match run.exit_reason {
        KVM_EXIT_IO => decode_io(vcpu, run),
        KVM_EXIT_EXCEPTION => {
            let ex = unsafe { run.__bindgen_anon_1.ex };
            VcpuExit::Exception {
                exception: ex.exception,
                error_code: ex.error_code,
            }
        }
        KVM_EXIT_DEBUG => debug_exit(run),
        KVM_EXIT_IRQ_WINDOW_OPEN => VcpuExit::IrqWindowOpen,
        KVM_EXIT_IOAPIC_EOI => VcpuExit::IoapicEoi {
            vector: unsafe { run.__bindgen_anon_1.eoi.vector },
        },
        KVM_EXIT_SET_TPR => VcpuExit::SetTpr,
        KVM_EXIT_TPR_ACCESS => VcpuExit::TprAccess,
        KVM_EXIT_X86_BUS_LOCK => VcpuExit::BusLock,
        KVM_EXIT_X86_RDMSR | KVM_EXIT_X86_WRMSR => {
            let msr = unsafe { run.__bindgen_anon_1.msr };
            let write = run.exit_reason == KVM_EXIT_X86_WRMSR;
            let data = if write { msr.data } else { 0 };
            let rec = vcpu.record();
            rec.msr_index = msr.index.into();
            rec.msr_data = data;
            rec.msr_write = write.into();
            rec.msr_fault = 0;
            vcpu.set_pending(Pending::Msr);
            VcpuExit::MsrAccess {
                index: msr.index,
                data,
                write,
            }
        }
        _ => return None,
    })
}

/// A port-I/O hypercall: the id the guest wrote (`size` bytes at `data_offset`), the
/// arguments from its registers, described in the record.
fn port_hypercall(vcpu: &KvmVcpu, size: u8, data_offset: usize) -> VcpuExit {
    let size = usize::from(size).min(8);
    let mut id = [0u8; 8];
    let Some(data) = vcpu.run_shared().slice_mut(data_offset, size) else {
        return VcpuExit::Unknown { reason: KVM_EXIT_IO };
    };
    id[..size].copy_from_slice(data);
    match port_hypercall_abi(vcpu, u64::from_le_bytes(id)) {
        Ok(abi) => {
            let rec = vcpu.record();
            rec.set_call(&abi);
            vcpu.set_pending(Pending::Hypercall);
            VcpuExit::Hypercall
        }
        Err(_) => VcpuExit::Unknown { reason: KVM_EXIT_IO },
    }
}

/// Nothing to prepare before a run on x86: the irqchip is whole from creation.
#[inline(always)]
pub(crate) fn before_run(_vcpu: &KvmVcpu) -> Result<()> {
    Ok(())
}

/// The x86 irqchip is whole from the VM's creation.
pub(crate) fn finalize_irqchip(_arch: &VmArch, _op: &'static str) -> Result<()> {
    Ok(())
}

/// Any vcpu may be added at any time on x86.
pub(crate) fn check_new_vcpu(_arch: &VmArch) -> Result<()> {
    Ok(())
}

/// `KVM_IRQ_LINE`'s argument for line `gsi`: the GSI itself.
pub(crate) fn irq_line(gsi: u32) -> u32 {
    gsi
}

/// `Vcpu::on_suspend`: `KVM_KVMCLOCK_CTRL`, so the guest's watchdogs stay quiet.
pub(crate) fn on_suspend(fd: &VcpuFd) -> Result<()> {
    match fd.kvmclock_ctrl() {
        // As crosvm: EINVAL means the guest has not set up kvmclock (yet, or on this
        // vcpu), so there is nothing to tell it; ENOTTY means a KVM without the ioctl.
        Err(e) if e.errno() == libc::EINVAL || e.errno() == libc::ENOTTY => Ok(()),
        other => other.op("onSuspend"),
    }
}
