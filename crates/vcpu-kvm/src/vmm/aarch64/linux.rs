//! The arm64 Linux boot protocol (Documentation/arch/arm64/booting.rst), with rust-vmm's
//! linux-loader: load an `Image` 2 MiB-aligned at the start of RAM, an initrd and a
//! device tree (vm-fdt) at the end, and start the boot vcpu at the image with X0 = the
//! tree, MMU off, interrupts masked. The other vcpus wait for PSCI CPU_ON.

use std::io::Cursor;

use linux_loader::loader::{self, KernelLoader, PE};
use vm_memory::GuestAddress;

use super::fdt::{device_tree, MachineDescription};
use crate::arch::aarch64::layout::*;
use crate::error::{Error, Result};
use crate::kvm::{KvmVcpu, KvmVm};
use crate::vmm::linux::{bad_image, too_big};
use crate::vmm::virtio::{guest_ram, mmio_slot};
use crate::Vcpu;

/// What `bad_image` says this loader wanted.
const KIND: &str = "arm64 kernel Image";

/// The `Image` header's fields a loader reads (booting.rst): the little-endian
/// `image_size` (what the kernel occupies, BSS included) at byte 16.
const IMAGE_SIZE_OFFSET: usize = 16;
/// The most a command line may be (the kernel's COMMAND_LINE_SIZE on arm64).
const CMDLINE_MAX: usize = 2048;
/// The most vcpus a machine has (the GICv3 redistributor region's room).
pub const MAX_CPUS: usize = MAX_GIC_V3_CPUS;

/// Where a loaded kernel starts and what the boot needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinuxBoot {
    /// The image's first instruction.
    pub entry: u64,
    /// The device tree, for X0.
    pub fdt: u64,
    /// First byte after the kernel (its BSS included).
    pub kernel_end: u64,
    /// Where the initrd is, and its size (0 when there is none).
    pub initrd: (u64, u64),
}

/// The RAM region that starts at [`RAM_START`]: (start, size).
fn ram(vm: &KvmVm) -> Result<(u64, u64)> {
    vm.regions()
        .iter()
        .find(|(_, r)| r.guest_address() == RAM_START && !r.readonly())
        .map(|(_, r)| (RAM_START, r.len() as u64))
        .ok_or_else(|| {
            Error::invalid(
                "loadLinux",
                format!("an arm64 Linux machine needs writable RAM at {RAM_START:#x}"),
            )
        })
}

/// Loads `kernel` (an uncompressed arm64 `Image`), `initrd` and a device tree with
/// `cmdline`, `cpus` processors, the UART, the GIC and the machine's first `virtio`
/// devices ([`mmio_slot`]s) into the VM's memory. Bad images give `EINVAL`, images or
/// initrds that do not fit give `ENOMEM`; the VM needs its GIC (`irqchip`).
pub fn load_linux(
    vm: &KvmVm,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    cpus: usize,
    virtio: usize,
) -> Result<LinuxBoot> {
    const OP: &str = "loadLinux";
    let gic = vm
        .gic_version()
        .ok_or_else(|| Error::invalid(OP, "loadLinux: the VM needs the in-kernel GIC (irqchip)"))?;
    let max_cpus = match gic {
        crate::kvm::GicVersion::V3 => MAX_CPUS,
        crate::kvm::GicVersion::V2 => MAX_GIC_V2_CPUS,
    };
    if cpus == 0 || cpus > max_cpus {
        return Err(Error::invalid(OP, format!("cpus must be 1 to {max_cpus}")));
    }
    if cmdline.len() >= CMDLINE_MAX {
        return Err(Error::invalid(
            OP,
            format!("the command line is longer than {}", CMDLINE_MAX - 1),
        ));
    }
    let (ram_start, ram_size) = ram(vm)?;
    let ram_end = ram_start + ram_size;
    let mem = guest_ram(vm, OP)?;
    let loaded =
        PE::load(&mem, Some(GuestAddress(ram_start)), &mut Cursor::new(kernel), None).map_err(|e| match e {
            loader::Error::Pe(loader::pe::Error::ReadKernelImage) => too_big("kernel"),
            other => bad_image(KIND, format!("{other:?}")),
        })?;
    let image_size = kernel
        .get(IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .unwrap_or(0);
    let kernel_end = loaded.kernel_end.max(loaded.kernel_load.0.saturating_add(image_size));

    // The tree at the top of RAM, 2 MiB aligned; the initrd just below it.
    let fdt_at = ram_end
        .checked_sub(FDT_MAX_SIZE)
        .ok_or_else(|| too_big("device tree"))?
        & !(FDT_MAX_SIZE - 1);
    if fdt_at < kernel_end {
        return Err(too_big("kernel with its device tree"));
    }
    let mut initrd_at = (0, 0);
    if let Some(initrd) = initrd.filter(|i| !i.is_empty()) {
        let size = initrd.len() as u64;
        let at = fdt_at
            .checked_sub(size)
            .map(|a| a & !0xfff)
            .filter(|&a| a >= kernel_end)
            .ok_or_else(|| too_big("initrd"))?;
        vm.write(at, initrd)?;
        initrd_at = (at, size);
    }
    let slots = (0..virtio).map(|i| mmio_slot(vm, i)).collect::<Result<Vec<_>>>()?;
    let blob = device_tree(&MachineDescription {
        ram: (ram_start, ram_size),
        cpus,
        gic,
        cmdline,
        initrd: initrd_at,
        virtio: &slots,
    })
    .map_err(|e| Error::invalid(OP, format!("loadLinux: the device tree: {e}")))?;
    if blob.len() as u64 > FDT_MAX_SIZE {
        return Err(too_big("device tree"));
    }
    vm.write(fdt_at, &blob).map_err(|_| too_big("device tree"))?;
    Ok(LinuxBoot {
        entry: loaded.kernel_load.0,
        fdt: fdt_at,
        kernel_end,
        initrd: initrd_at,
    })
}

/// Puts the boot vcpu (id 0) at the kernel's entry: EL1h, MMU off, D, A, I, F masked,
/// X0 = the device tree. Every other vcpu waits, powered off, for PSCI CPU_ON.
pub fn start_linux(vcpu: &KvmVcpu, boot: &LinuxBoot) -> Result<()> {
    if vcpu.id() != 0 {
        return vcpu.wait_for_cpu_on();
    }
    let mut regs = vcpu.get_arm64_regs()?;
    regs.x = [0; 31];
    regs.x[0] = boot.fdt;
    vcpu.set_arm64_regs(&regs)?;
    vcpu.setup_el1(boot.entry, 0)
}
