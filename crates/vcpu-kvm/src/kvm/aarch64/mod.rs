//! aarch64 specifics of the KVM backend, in crosvm's layout: VM and vcpu set-up
//! (`KVM_ARM_PREFERRED_TARGET`, `KVM_ARM_VCPU_INIT` with PSCI 0.2), registers through
//! `KVM_GET/SET_ONE_REG` (`regs`), and SMCCC calls forwarded to userspace as hypercalls
//! (`smccc`). There is no port I/O: devices are MMIO, decoded generically. PSCI
//! SYSTEM_OFF and SYSTEM_RESET arrive as `KVM_EXIT_SYSTEM_EVENT`, also generic.

mod gic;
mod gic_state;
mod gic_v2_state;
mod regs;
mod smccc;
mod snapshot;
mod translate;

pub use gic::GicVersion;
pub use regs::{sys_reg, Arm64Regs, ARM64_CORE_REG_NAMES};
pub(crate) use snapshot::{
    reset_vcpu, reset_vm, restore_vcpu, restore_vm, save_vcpu, save_vm, VcpuSnapshot, VmSnapshot,
};

use kvm_bindings::*;
use kvm_ioctls::{VcpuFd, VmFd};

use super::vcpu::KvmVcpu;
use super::{Kvm, VmConfig};
use crate::error::{Context, Error, ErrorCode, Result};
use crate::{HypercallAbi, VcpuExit};

/// No sync registers on arm64.
pub(crate) const SYNC_REGS_WANTED: i32 = 0;

/// What arm64 keeps per VM: how its vcpus are initialized, and its GIC.
pub(crate) struct VmArch {
    init: kvm_vcpu_init,
    gic: Option<gic::Gic>,
}

/// Asks KVM for the host's preferred vcpu target, forwards SMCCC calls outside the
/// services KVM implements to userspace (unless the hypercall ABI is off:
/// `hypercall_port: None`), and creates the GIC if asked (the architected
/// timer is KVM's, on its default PPIs).
pub(crate) fn init_vm(_kvm: &Kvm, fd: &VmFd, config: &VmConfig) -> Result<VmArch> {
    if config.userspace_msr {
        return Err(Error::invalid("createVm", "userspaceMsr: MSRs exist on x86 only"));
    }
    let gic = config.irqchip.then(|| gic::Gic::create(fd)).transpose()?;
    let mut init = kvm_vcpu_init::default();
    fd.get_preferred_target(&mut init).op("createVm")?;
    init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    // Without the hypercall ABI (a Linux machine's), KVM answers every SMCCC call itself.
    if config.hypercall_port.is_some() {
        smccc::forward_to_user(fd)?;
    }
    Ok(VmArch { init, gic })
}

impl VmArch {
    fn gic_version(&self) -> Option<GicVersion> {
        self.gic.as_ref().map(|g| g.version)
    }
}

/// Initialises the GIC (once), with the state a restored VM saved.
pub(crate) fn finalize_irqchip(arch: &VmArch, op: &'static str) -> Result<()> {
    match &arch.gic {
        Some(gic) if !gic.is_finalized() => gic.finalize(op),
        _ => Ok(()),
    }
}

/// Before a vcpu runs: the GIC is initialised at the VM's first run (if nothing did
/// before), once every vcpu exists (KVM refuses vcpus created after it).
#[inline]
pub(crate) fn before_run(vcpu: &KvmVcpu) -> Result<()> {
    finalize_irqchip(&vcpu.vm.shared().arch, "run")
}

/// Refuses a vcpu once the GIC is initialised, saying why (KVM would say EBUSY).
pub(crate) fn check_new_vcpu(arch: &VmArch) -> Result<()> {
    match &arch.gic {
        Some(gic) if gic.is_finalized() => Err(Error::new(
            ErrorCode::Errno(libc::EBUSY),
            "createVcpu",
            "createVcpu: the VM has run, and its GIC takes no vcpu after that: create every vcpu first",
        )),
        _ => Ok(()),
    }
}

/// `KVM_IRQ_LINE`'s argument for interrupt line `gsi` (shared interrupt `gsi`).
pub(crate) fn irq_line(gsi: u32) -> u32 {
    gic::spi_line(gsi)
}

impl KvmVcpu {
    /// Holds the vcpu, powered off, until the guest starts it with PSCI CPU_ON (a Linux
    /// machine's secondaries); until then a run waits in the kernel.
    pub fn wait_for_cpu_on(&self) -> Result<()> {
        const OP: &str = "startLinux";
        self.fd(OP)?
            .set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_STOPPED,
            })
            .op(OP)
    }
}

impl super::KvmVm {
    /// The in-kernel GIC's version (`None` without `irqchip`).
    pub fn gic_version(&self) -> Option<GicVersion> {
        self.shared().arch.gic_version()
    }
}

/// `KVM_ARM_VCPU_INIT`: the vcpu starts at EL1h with interrupts masked, PC 0 (also
/// before a restore, which sets registers of an initialised vcpu).
pub(crate) fn init_vcpu(vcpu: &KvmVcpu, _restoring: bool) -> Result<()> {
    vcpu.fd.vcpu_init(&vcpu.vm.shared().arch.init).op("createVcpu")
}

/// A `KVM_EXIT_DEBUG` exit (the caller checked the exit reason): the exception class
/// from ESR, the fault address in `dr7`'s place.
pub(crate) fn debug_exit(run: &kvm_run) -> VcpuExit {
    // SAFETY: the exit reason is KVM_EXIT_DEBUG, whose `debug` member is plain old data.
    let arch = unsafe { run.__bindgen_anon_1.debug.arch };
    VcpuExit::Debug {
        exception: arch.hsr >> 26,
        pc: 0,
        dr6: 0,
        dr7: arch.far,
    }
}

/// Decodes the exits only arm64 has (`None` for a reason it does not know either).
pub(crate) fn decode_arch_exit(_vcpu: &KvmVcpu, run: &mut kvm_run) -> Option<VcpuExit> {
    match run.exit_reason {
        KVM_EXIT_DEBUG => Some(debug_exit(run)),
        _ => None,
    }
}

/// An SMCCC call KVM forwarded (`KVM_EXIT_HYPERCALL`): crosvm's arm64 ABI, X0 = the
/// function id (KVM's `nr`), X1–X3 the arguments, default results `[u64::MAX, 0, 0, 0]`
/// (SMCCC's NOT_SUPPORTED).
pub(crate) fn kvm_hypercall(vcpu: &KvmVcpu, run: &kvm_run) -> Option<HypercallAbi> {
    // SAFETY: called for KVM_EXIT_HYPERCALL, whose `hypercall` member is live.
    let nr = unsafe { run.__bindgen_anon_1.hypercall.nr };
    let mut args = [0usize; 3];
    for (i, arg) in args.iter_mut().enumerate() {
        *arg = vcpu.get_one_reg(regs::x(i + 1)).ok()? as usize;
    }
    Some(HypercallAbi::new(nr as usize, &args, &[u64::MAX as usize, 0, 0, 0]))
}

/// Writes an SMCCC call's results into X0–X3 (KVM has already moved PC past the `hvc`).
pub(crate) fn complete_kvm_hypercall(vcpu: &KvmVcpu, abi: &HypercallAbi) -> Result<()> {
    for (i, value) in abi.get_results().iter().enumerate().take(4) {
        vcpu.set_one_reg(regs::x(i), *value as u64)?;
    }
    Ok(())
}

/// Port-I/O hypercalls do not exist on arm64.
pub(crate) fn write_hypercall_results(_vcpu: &KvmVcpu, _abi: &HypercallAbi) -> Result<()> {
    Ok(())
}

/// `Vcpu::on_suspend`: arm64 guests have no kvmclock to tell.
pub(crate) fn on_suspend(_fd: &VcpuFd) -> Result<()> {
    Ok(())
}
