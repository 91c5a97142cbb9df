//! The KVM backend: `/dev/kvm`, VMs, guest memory, vcpus.

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod deadline;
mod exits;
pub mod ioctls;
mod kick;
mod lifecycle;
mod memory;
mod memory_map;
mod reset;
mod run;
pub(crate) mod run_hook;
mod signal;
mod snapshot;
mod vcpu;
mod vm;
mod vm_events;
mod vm_memory;
mod vm_persist;
mod write_log;
#[cfg(target_arch = "x86_64")]
mod x86_64;

// The architecture's hooks: VM and vcpu set-up, the exits only it has, hypercall results.
#[cfg(target_arch = "aarch64")]
use aarch64 as arch;
#[cfg(target_arch = "x86_64")]
use x86_64 as arch;

#[cfg(target_arch = "aarch64")]
pub use aarch64::{sys_reg, Arm64Regs, GicVersion, ARM64_CORE_REG_NAMES};
pub use deadline::RunDeadline;
pub use kick::{kick_signal, VcpuThread, KICK_SIGNAL_OFFSET};
pub use memory::{GuestRegion, Mapping, PAGE_SIZE};
pub use run::RunShared;
pub use snapshot::{SnapshotInfo, SnapshotOptions};
pub use vcpu::KvmVcpu;
pub use vm::{KvmVm, VmConfig, WeakVm, CLOSE_WAIT, DEFAULT_HYPERCALL_PORT, MAX_GUEST_ADDRESS_BITS};
pub use vm_events::{IoEvent, IoEventSpec, IrqEvent};
pub use vm_memory::MAX_COPY;
#[cfg(target_arch = "x86_64")]
pub use x86_64::{GuestDebug, MsrAccess, HYPERCALL_ARG_REGS, HYPERCALL_RESULT_REGS};

use crate::error::{Error, ErrorCode, Result};

/// The default path of the KVM device.
pub const KVM_PATH: &str = "/dev/kvm";

/// An open `/dev/kvm`.
pub struct Kvm {
    fd: kvm_ioctls::Kvm,
}

impl Kvm {
    /// Opens the KVM device at `path` (default `/dev/kvm`). A missing device or missing
    /// permission gives an error that says what to do.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let kvm = vcpu_kvm::Kvm::open(None).unwrap();
    /// assert_eq!(kvm.api_version(), 12);
    /// ```
    pub fn open(path: Option<&str>) -> Result<Self> {
        const OP: &str = "Kvm.open";
        let path = path.unwrap_or(KVM_PATH);
        let fd = kvm_ioctls::Kvm::new_with_path(std::ffi::CString::new(path).map_err(|_| Error::invalid(OP, "the path contains a NUL byte"))?)
            .map_err(|e| {
                let errno = e.errno();
                let hint = match errno {
                    libc::ENOENT => format!("{path} does not exist: KVM is not available. Enable virtualization in the firmware and load the module (`modprobe kvm_intel` or `modprobe kvm_amd`), or run on a host with nested virtualization"),
                    libc::EACCES | libc::EPERM => format!("no permission to open {path}: add your user to the 'kvm' group (`sudo usermod -aG kvm $USER`, then log in again) or grant access with a udev rule"),
                    _ => format!("cannot open {path}: {}", std::io::Error::from_raw_os_error(errno)),
                };
                Error::new(ErrorCode::Errno(errno), OP, hint)
            })?;
        let version = fd.get_api_version();
        if version < 0 {
            return Err(Error::new(
                ErrorCode::Errno(libc::ENOTTY),
                OP,
                format!("{path} is not a KVM device"),
            ));
        }
        if version != 12 {
            return Err(Error::new(
                ErrorCode::Errno(libc::ENOTSUP),
                OP,
                format!("KVM API version {version} is not the supported version 12"),
            ));
        }
        Ok(Kvm { fd })
    }

    pub(crate) fn fd(&self) -> &kvm_ioctls::Kvm {
        &self.fd
    }

    /// `KVM_GET_API_VERSION` (always 12 for an opened `Kvm`).
    pub fn api_version(&self) -> i32 {
        self.fd.get_api_version()
    }

    /// `KVM_CHECK_EXTENSION`: 0 if `cap` is absent, else a positive value (often 1,
    /// sometimes a count or bitmask).
    pub fn check_extension(&self, cap: u32) -> i32 {
        self.fd.check_extension_raw(cap.into())
    }

    /// `KVM_GET_SUPPORTED_CPUID`.
    #[cfg(target_arch = "x86_64")]
    pub fn supported_cpuid(&self) -> Result<Vec<kvm_bindings::kvm_cpuid_entry2>> {
        let cpuid = self
            .fd
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| Error::errno("supportedCpuid", e.errno()))?;
        Ok(cpuid.as_slice().to_vec())
    }

    /// Creates a VM (x86: TSS and identity map placed below 4 GiB, irqchip if asked).
    pub fn create_vm(&self, config: VmConfig) -> Result<KvmVm> {
        KvmVm::new(self, config)
    }
}
