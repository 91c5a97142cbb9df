//! The in-kernel GIC (`KVM_CREATE_DEVICE`): v3 with a redistributor per vcpu, else v2.
//! KVM wants it initialised (`KVM_DEV_ARM_VGIC_CTRL_INIT`) after every vcpu exists and
//! before any runs: [`Gic::finalize`] does that at the VM's first run, first irqfd or
//! first irq line (whichever comes first), so callers create their vcpus, then wire
//! interrupts and run. A restored VM's GIC state goes back right after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use kvm_bindings::*;
use kvm_ioctls::{DeviceFd, VmFd};

use crate::arch::aarch64::layout::*;
use crate::error::{Error, ErrorCode, Result};

/// Which GIC KVM gave the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GicVersion {
    V2,
    V3,
}

/// The VM's GIC device and whether it has been initialised.
pub(crate) struct Gic {
    pub(crate) fd: DeviceFd,
    pub(crate) version: GicVersion,
    /// Set once initialised; read at every run, so an atomic rather than the lock.
    finalized: AtomicBool,
    /// Held while initialising, so two first runs initialise once; holds the state a
    /// restored VM puts back right after.
    finalizing: Mutex<Restoring>,
}

/// What a restore gives the GIC, applied once it is initialised (KVM takes register
/// values only then, and the redistributors only once their vcpus exist).
#[derive(Default)]
pub(crate) struct Restoring {
    pub(crate) dist: Option<Vec<super::gic_state::Reg32>>,
    pub(crate) vcpus: Vec<super::gic_state::VcpuGic>,
    /// A GICv2's whole state.
    pub(crate) v2: Option<Vec<super::gic_v2_state::AttrReg>>,
}

/// `KVM_GET_DEVICE_ATTR` into `value`, or `KVM_SET_DEVICE_ATTR` from it (`write`): one
/// GIC attribute, whose register is as wide as `T`.
pub(super) fn access<T>(fd: &DeviceFd, group: u32, attr: u64, value: &mut T, write: bool) -> std::io::Result<()> {
    let mut a = kvm_device_attr {
        group,
        attr,
        addr: value as *mut T as u64,
        flags: 0,
    };
    let result = if write {
        fd.set_device_attr(&a)
    } else {
        // SAFETY: `addr` points at `value`, a live `T` as wide as the attribute's value
        // (u32 for distributor, redistributor and GICv2 CPU registers, u64 for system
        // registers and addresses), which is all the kernel writes.
        unsafe { fd.get_device_attr(&mut a) }
    };
    result.map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// A GIC attribute KVM refused: its errno, saying which.
pub(super) fn gic_error(op: &'static str, what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        op,
        format!("{op}: the in-kernel GIC: {what}: {e}"),
    )
}

impl Gic {
    /// Creates the GIC: v3 where the host has it, else v2, at the layout's addresses.
    pub(crate) fn create(vm: &VmFd) -> Result<Gic> {
        const OP: &str = "createVm";
        let mut errors = Vec::new();
        for version in [GicVersion::V3, GicVersion::V2] {
            let mut device = kvm_create_device {
                type_: match version {
                    GicVersion::V3 => kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
                    GicVersion::V2 => kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2,
                },
                fd: 0,
                flags: 0,
            };
            let fd = match vm.create_device(&mut device) {
                Ok(fd) => fd,
                Err(e) => {
                    errors.push(format!("{version:?}: {e}"));
                    continue;
                }
            };
            let addresses: &[(u32, u64)] = match version {
                GicVersion::V3 => &[
                    (KVM_VGIC_V3_ADDR_TYPE_DIST, GIC_DIST),
                    (KVM_VGIC_V3_ADDR_TYPE_REDIST, GIC_V3_REDIST),
                ],
                GicVersion::V2 => &[
                    (KVM_VGIC_V2_ADDR_TYPE_DIST, GIC_DIST),
                    (KVM_VGIC_V2_ADDR_TYPE_CPU, GIC_V2_CPU),
                ],
            };
            for &(kind, mut address) in addresses {
                access(&fd, KVM_DEV_ARM_VGIC_GRP_ADDR, kind.into(), &mut address, true)
                    .map_err(|e| gic_error(OP, "placing it", e))?;
            }
            let mut irqs: u32 = GIC_NR_IRQS;
            access(&fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &mut irqs, true)
                .map_err(|e| gic_error(OP, "setting its interrupt count", e))?;
            return Ok(Gic {
                fd,
                version,
                finalized: AtomicBool::new(false),
                finalizing: Mutex::new(Restoring::default()),
            });
        }
        Err(Error::new(
            ErrorCode::Errno(libc::ENOTSUP),
            OP,
            format!("createVm: KVM has no in-kernel GIC here ({})", errors.join("; ")),
        ))
    }

    /// Initialises the GIC once (later calls do nothing): after it, no vcpu can be added.
    pub(crate) fn finalize(&self, op: &'static str) -> Result<()> {
        if self.is_finalized() {
            return Ok(());
        }
        let mut restoring = self.restoring();
        if !self.is_finalized() {
            // CTRL_INIT reads nothing at `addr`.
            access(
                &self.fd,
                KVM_DEV_ARM_VGIC_GRP_CTRL,
                KVM_DEV_ARM_VGIC_CTRL_INIT.into(),
                &mut 0u64,
                true,
            )
            .map_err(|e| gic_error(op, "initialising it", e))?;
            self.finalized.store(true, Ordering::Release);
            let saved = std::mem::take(&mut *restoring);
            if let Some(dist) = &saved.dist {
                super::gic_state::restore_dist(&self.fd, dist, op)?;
            }
            for vcpu in &saved.vcpus {
                super::gic_state::restore_vcpu(&self.fd, vcpu, op)?;
            }
            if let Some(regs) = &saved.v2 {
                super::gic_v2_state::restore(&self.fd, regs, op)?;
            }
        }
        Ok(())
    }

    /// The state a restore is putting back (locked: finalizing waits for it).
    pub(crate) fn restoring(&self) -> std::sync::MutexGuard<'_, Restoring> {
        self.finalizing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once [`Gic::finalize`] ran.
    pub(crate) fn is_finalized(&self) -> bool {
        self.finalized.load(Ordering::Acquire)
    }
}

/// `KVM_IRQ_LINE`'s argument for shared line `gsi` (SPI `gsi`).
pub(crate) fn spi_line(gsi: u32) -> u32 {
    (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (GIC_SPI_BASE + gsi)
}
