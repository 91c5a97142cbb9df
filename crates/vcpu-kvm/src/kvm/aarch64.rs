//! aarch64 specifics of the KVM backend: VM and vcpu set-up and the exits only arm64
//! has. Hypercalls arrive as `KVM_EXIT_HYPERCALL` (SMCCC calls KVM forwards), which the
//! generic exit path already decodes, so results need no arch help here.

use kvm_bindings::*;
use kvm_ioctls::{VcpuFd, VmFd};

use super::vcpu::KvmVcpu;
use super::{Kvm, VmConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::{HypercallAbi, VcpuExit};

/// No sync registers on arm64.
pub(crate) const SYNC_REGS_WANTED: i32 = 0;

/// What arm64 keeps per VM: nothing yet.
#[allow(dead_code)]
pub(crate) struct VmArch;

/// Nothing to place: arm64 VMs need no TSS or identity map.
pub(crate) fn init_vm(_kvm: &Kvm, _fd: &VmFd, config: &VmConfig) -> Result<VmArch> {
    if config.userspace_msr {
        return Err(Error::invalid("createVm", "userspaceMsr: MSRs exist on x86 only"));
    }
    if config.irqchip {
        return Err(Error::invalid(
            "createVm",
            "the in-kernel irqchip (GIC) is not supported on aarch64 yet",
        ));
    }
    Ok(VmArch)
}

/// Nothing beyond KVM_ARM_VCPU_INIT, which the VM does at creation.
pub(crate) fn init_vcpu(_vcpu: &KvmVcpu) -> Result<()> {
    Ok(())
}

/// Decodes the exits only arm64 has (`None` for a reason it does not know either).
pub(crate) fn decode_arch_exit(_vcpu: &KvmVcpu, run: &mut kvm_run) -> Option<VcpuExit> {
    match run.exit_reason {
        KVM_EXIT_DEBUG => {
            // SAFETY: the exit reason names `debug` as the active member, plain old data.
            let arch = unsafe { run.__bindgen_anon_1.debug.arch };
            Some(VcpuExit::Debug {
                exception: arch.hsr >> 26,
                pc: 0,
                dr6: 0,
                dr7: arch.far,
            })
        }
        _ => None,
    }
}

/// A hypercall on arm64 is always `KVM_EXIT_HYPERCALL`, written back generically.
pub(crate) fn write_hypercall_results(_vcpu: &KvmVcpu, _abi: &HypercallAbi) -> Result<()> {
    Ok(())
}

/// `Vcpu::on_suspend`: arm64 guests have no kvmclock to tell.
pub(crate) fn on_suspend(_fd: &VcpuFd) -> Result<()> {
    Ok(())
}

/// Snapshots are not implemented for arm64 yet: the device and vcpu state (GIC, timers,
/// the ONE_REG registers) is a different set.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct VmSnapshot;

/// See [`VmSnapshot`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct VcpuSnapshot {
    pub(crate) id: u32,
}

fn no_snapshots(op: &'static str) -> Error {
    Error::new(
        ErrorCode::Errno(libc::ENOTSUP),
        op,
        format!("{op}: snapshots are not supported on aarch64 yet"),
    )
}

pub(crate) fn save_vm(_fd: &VmFd, _irqchip: bool) -> Result<VmSnapshot> {
    Err(no_snapshots("snapshot"))
}

pub(crate) fn restore_vm(_fd: &VmFd, _vm: &VmSnapshot) -> Result<()> {
    Err(no_snapshots("restoreVm"))
}

pub(crate) fn save_vcpu(_vcpu: &KvmVcpu, _irqchip: bool) -> Result<VcpuSnapshot> {
    Err(no_snapshots("snapshot"))
}

pub(crate) fn restore_vcpu(_vcpu: &KvmVcpu, _state: &VcpuSnapshot) -> Result<()> {
    Err(no_snapshots("restoreVm"))
}
