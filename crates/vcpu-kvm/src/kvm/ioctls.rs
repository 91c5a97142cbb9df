//! The few vcpu ioctls that kvm-ioctls does not let us call on `&self`.
//!
//! `VcpuFd::run` takes `&mut self` and keeps the `kvm_run` mapping to itself, so an
//! immediate exit cannot be requested soundly from another thread (rust-vmm/kvm#373);
//! like crosvm and Firecracker we issue `KVM_RUN` ourselves over our own mapping.
//! kvm-ioctls has no `KVM_INTERRUPT` wrapper, its `KVM_IOEVENTFD` ties the length to
//! the datamatch's type (no length without a datamatch), and its `KVM_GET_REG_LIST`
//! takes at most 500 registers (arm64 KVMs with nested virtualization list more).

use std::os::unix::io::AsRawFd;

use kvm_bindings::{kvm_enable_cap, kvm_interrupt, kvm_ioeventfd, KVMIO};
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::{ioctl, ioctl_with_ref};
use vmm_sys_util::{ioctl_io_nr, ioctl_iow_nr};

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_iow_nr!(KVM_INTERRUPT, KVMIO, 0x86, kvm_interrupt);
ioctl_iow_nr!(KVM_ENABLE_CAP, KVMIO, 0xa3, kvm_enable_cap);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_ioeventfd);
#[cfg(target_arch = "aarch64")]
vmm_sys_util::ioctl_iowr_nr!(KVM_GET_REG_LIST, KVMIO, 0xb0, kvm_bindings::kvm_reg_list);

/// `KVM_GET_REG_LIST`: the ids of every register the vcpu has, at most `max`; `E2BIG`
/// if it has more.
#[cfg(target_arch = "aarch64")]
pub fn reg_list(vcpu: &impl AsRawFd, max: usize) -> errno::Result<Vec<u64>> {
    // `struct kvm_reg_list { __u64 n; __u64 reg[]; }`: the count, then room for `max`.
    let mut buf = vec![0u64; 1 + max];
    buf[0] = max as u64;
    // SAFETY: `buf` is a `kvm_reg_list` header followed by room for `buf[0]` ids, which
    // is all the kernel writes (it fails with E2BIG rather than write more).
    let ret = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ptr(vcpu, KVM_GET_REG_LIST(), buf.as_mut_ptr()) };
    if ret < 0 {
        return Err(errno::Error::last());
    }
    let n = (buf[0] as usize).min(max);
    buf.drain(..1);
    buf.truncate(n);
    Ok(buf)
}

/// `KVM_RUN`: enters the guest until it exits; the exit is described in `kvm_run`.
///
/// # Example
///
/// ```no_run
/// # use kvm_ioctls::Kvm;
/// let kvm = Kvm::new().unwrap();
/// let vm = kvm.create_vm().unwrap();
/// let vcpu = vm.create_vcpu(0).unwrap();
/// // A fresh vcpu with no memory exits at once (`KVM_EXIT_MMIO` or `KVM_EXIT_SHUTDOWN`).
/// vcpu_kvm::kvm::ioctls::run(&vcpu).unwrap();
/// ```
pub fn run(vcpu: &impl AsRawFd) -> errno::Result<()> {
    // SAFETY: KVM_RUN takes no argument; the kernel writes only into the vcpu's own
    // `kvm_run` page, which it owns and which user space only maps.
    let ret = unsafe { ioctl(vcpu, KVM_RUN()) };
    if ret < 0 {
        return Err(errno::Error::last());
    }
    Ok(())
}

/// `KVM_INTERRUPT`: queues an external interrupt `vector` (only without an in-kernel
/// irqchip; with one, use the irqchip's lines or MSIs).
///
/// # Example
///
/// ```no_run
/// # use kvm_ioctls::Kvm;
/// let kvm = Kvm::new().unwrap();
/// let vm = kvm.create_vm().unwrap();
/// let vcpu = vm.create_vcpu(0).unwrap();
/// vcpu_kvm::kvm::ioctls::interrupt(&vcpu, 0x20).unwrap();
/// ```
pub fn interrupt(vcpu: &impl AsRawFd, vector: u32) -> errno::Result<()> {
    let irq = kvm_interrupt { irq: vector };
    // SAFETY: the kernel reads one `kvm_interrupt`, which lives on our stack for the call.
    let ret = unsafe { ioctl_with_ref(vcpu, KVM_INTERRUPT(), &irq) };
    if ret < 0 {
        return Err(errno::Error::last());
    }
    Ok(())
}

/// `KVM_ENABLE_CAP` on a vcpu or VM fd: kvm-ioctls offers it for a vcpu on x86 and
/// s390 only, while the ioctl is generic.
///
/// # Example
///
/// ```no_run
/// # use kvm_ioctls::Kvm;
/// let kvm = Kvm::new().unwrap();
/// let vm = kvm.create_vm().unwrap();
/// let cap = kvm_bindings::kvm_enable_cap { cap: kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR, ..Default::default() };
/// let _ = vcpu_kvm::kvm::ioctls::enable_cap(&vm, &cap);
/// ```
pub fn enable_cap(fd: &impl AsRawFd, cap: &kvm_enable_cap) -> errno::Result<()> {
    // SAFETY: the kernel reads one `kvm_enable_cap`, which outlives the call; what its
    // `args` mean is the caller's contract (see `Vcpu::enable_raw_capability`).
    let ret = unsafe { ioctl_with_ref(fd, KVM_ENABLE_CAP(), cap) };
    if ret < 0 {
        return Err(errno::Error::last());
    }
    Ok(())
}

/// `KVM_IOEVENTFD` with every field the caller's: assigns (or, with the deassign flag,
/// removes) an ioeventfd.
pub fn ioeventfd(vm: &impl AsRawFd, event: &kvm_ioeventfd) -> errno::Result<()> {
    // SAFETY: the kernel reads one `kvm_ioeventfd` from our reference; the eventfd in it
    // is the caller's, alive for the call.
    let ret = unsafe { ioctl_with_ref(vm, KVM_IOEVENTFD(), event) };
    if ret < 0 {
        return Err(errno::Error::last());
    }
    Ok(())
}
