//! Which SMCCC calls reach userspace: `KVM_ARM_VM_SMCCC_FILTER` (Linux 6.4 and later)
//! forwards the services KVM does not implement itself, so that a guest's `hvc #0` with
//! such a function id in X0 exits as `KVM_EXIT_HYPERCALL`.

use kvm_bindings::*;
use kvm_ioctls::VmFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

use crate::error::{Error, ErrorCode, Result};

ioctl_iow_nr!(KVM_SET_DEVICE_ATTR, KVMIO, 0xe1, kvm_device_attr);

/// SMCCC owning entities KVM leaves to the VMM: SiP (2), OEM (3), the standard
/// hypervisor service (5) and the rest of the range above the vendor hypervisor (7–47),
/// in both the SMC32 (`0x8…`) and SMC64 (`0xC…`) fast-call spaces. KVM keeps the Arm
/// architecture calls (0), CPU (1), PSCI and the standard secure services (4), its own
/// vendor hypervisor calls (6), and the trusted OS range (48–63).
const FORWARDED: [(u32, u32); 3] = [(2, 2), (5, 1), (7, 41)];

/// The first function id of owning entity `owner` in the fast-call space `base`.
const fn owner_base(base: u32, owner: u32) -> u32 {
    base | owner << 24
}

pub(super) fn forward_to_user(fd: &VmFd) -> Result<()> {
    for space in [0x8000_0000u32, 0xc000_0000] {
        for (first, count) in FORWARDED {
            let filter = kvm_smccc_filter {
                base: owner_base(space, first),
                nr_functions: count << 24,
                action: kvm_smccc_filter_action_KVM_SMCCC_FILTER_FWD_TO_USER as u8,
                pad: [0; 15],
            };
            let attr = kvm_device_attr {
                group: KVM_ARM_VM_SMCCC_CTRL,
                attr: KVM_ARM_VM_SMCCC_FILTER.into(),
                addr: &filter as *const kvm_smccc_filter as u64,
                flags: 0,
            };
            // SAFETY: the kernel reads one `kvm_device_attr` and, through `addr`, one
            // `kvm_smccc_filter`; both live on our stack for the call.
            let ret = unsafe { ioctl_with_ref(fd, KVM_SET_DEVICE_ATTR(), &attr) };
            if ret < 0 {
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
                // Kernels before 6.4 have no filter: hypercalls then never exit, as on
                // them `hvc` never did.
                if errno == libc::ENXIO || errno == libc::EINVAL {
                    return Ok(());
                }
                let text = std::io::Error::from_raw_os_error(errno);
                let message = format!("createVm: KVM_ARM_VM_SMCCC_FILTER failed: {text}");
                return Err(Error::new(ErrorCode::Errno(errno), "createVm", message));
            }
        }
    }
    Ok(())
}
