//! The Linux x86 boot protocol, with rust-vmm's linux-loader: load a bzImage or an ELF
//! vmlinux and an initrd, write the zero page (`boot_params`) with the setup header,
//! the e820 map and the command line, and start a vcpu at the kernel's 64-bit entry
//! with RSI pointing at the zero page.

use std::io::Cursor;

use kvm_bindings::{kvm_fpu, kvm_regs};
use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::{self, BzImage, Cmdline, Elf, KernelLoader};
use vm_memory::GuestAddress;

use crate::arch::x86_64::layout::*;
use crate::error::{Error, Result};
use crate::kvm::{KvmVcpu, KvmVm};
use crate::vmm::linux::{bad_image, too_big};
use crate::vmm::virtio::{guest_ram, mmio_slot};
use crate::Vcpu;

use super::acpi;

/// What `bad_image` says this loader wanted.
const KIND: &str = "x86-64 kernel";

const E820_RAM: u32 = 1;
const BOOT_FLAG: u16 = 0xaa55;
const HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const LOADER_UNDEFINED: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// Offset of the 64-bit entry point in a bzImage's protected-mode kernel.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;

/// Where a loaded kernel starts and what the boot needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinuxBoot {
    /// The 64-bit entry point.
    pub entry: u64,
    /// The zero page (`boot_params`), for RSI.
    pub zero_page: u64,
    /// First byte after the kernel image.
    pub kernel_end: u64,
    /// Where the initrd is, and its size (0 when there is none).
    pub initrd: (u64, u64),
}

/// The e820 map: every writable region is RAM, except the legacy hole between the EBDA
/// and 1 MiB.
fn e820_map(vm: &KvmVm) -> Vec<boot_e820_entry> {
    let mut regions = vm.regions();
    regions.sort_by_key(|(_, r)| r.guest_address());
    let mut map = Vec::new();
    for (_, r) in regions.iter().filter(|(_, r)| !r.readonly()) {
        let (start, end) = (r.guest_address(), r.guest_address() + r.len() as u64);
        for (s, e) in [(start, end.min(EBDA_START)), (start.max(KERNEL_ADDR), end)] {
            if s < e {
                map.push(boot_e820_entry {
                    addr: s,
                    size: e - s,
                    r#type: E820_RAM,
                });
            }
        }
    }
    map
}

/// Loads `kernel` (a bzImage, or an ELF vmlinux), `initrd` and `cmdline` into the VM's
/// memory following the boot protocol, with an MP table and ACPI tables describing
/// `cpus` processors. The machine's first `virtio` devices ([`mmio_slot`]s) are
/// announced both on the command line (`virtio_mmio.device=4K@ADDR:IRQ`, for kernels
/// built with `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` and without ACPI) and in the DSDT
/// (for distribution kernels, which have ACPI but not that option); in a kernel that
/// reads both, the second claim on a window is refused and the first drives the device.
/// Bad images give `EINVAL`, images or initrds that do not fit give `ENOMEM`.
pub fn load_linux(
    vm: &KvmVm,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    cpus: usize,
    virtio: usize,
) -> Result<LinuxBoot> {
    if cpus == 0 || cpus > super::mptable::MAX_CPUS {
        return Err(Error::invalid(
            "loadLinux",
            format!("cpus must be 1 to {}", super::mptable::MAX_CPUS),
        ));
    }
    // The loader writes through the regions' write logs, as a device would.
    let mem = guest_ram(vm, "loadLinux")?;
    let himem = Some(GuestAddress(KERNEL_ADDR));
    let is_elf = kernel.starts_with(b"\x7fELF");
    let loaded = if is_elf {
        Elf::load(&mem, None, &mut Cursor::new(kernel), himem)
    } else {
        BzImage::load(&mem, None, &mut Cursor::new(kernel), himem)
    }
    .map_err(|e| match e {
        loader::Error::MemoryOverflow => too_big("kernel"),
        loader::Error::Elf(loader::elf::Error::ReadKernelImage)
        | loader::Error::Bzimage(loader::bzimage::Error::ReadBzImageCompressedKernel) => too_big("kernel"),
        other => bad_image(KIND, format!("{other:?}")),
    })?;
    let entry = if is_elf {
        loaded.kernel_load.0
    } else {
        loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY
    };

    let mut hdr = loaded.setup_header.unwrap_or_default();
    hdr.boot_flag = BOOT_FLAG;
    hdr.header = HDR_MAGIC;
    hdr.type_of_loader = LOADER_UNDEFINED;
    if hdr.kernel_alignment == 0 {
        hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }

    let slots = (0..virtio).map(|i| mmio_slot(vm, i)).collect::<Result<Vec<_>>>()?;
    let mut cmdline = cmdline.to_string();
    for (address, irq) in &slots {
        cmdline = format!("{cmdline} virtio_mmio.device=4K@{address:#x}:{irq}");
    }
    let cmdline = cmdline.trim_start();
    if cmdline.len() + 1 > CMDLINE_MAX_SIZE {
        return Err(Error::invalid(
            "loadLinux",
            format!("the command line is longer than {}", CMDLINE_MAX_SIZE - 1),
        ));
    }
    let mut cmd = Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| Error::invalid("loadLinux", format!("{e:?}")))?;
    if !cmdline.is_empty() {
        cmd.insert_str(cmdline)
            .map_err(|e| Error::invalid("loadLinux", format!("command line: {e}")))?;
    }
    loader::load_cmdline(&mem, GuestAddress(CMDLINE_ADDR), &cmd).map_err(|_| too_big("command line"))?;
    hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    hdr.cmdline_size = cmdline.len() as u32 + 1;

    let e820 = e820_map(vm);
    let mut initrd_at = (0, 0);
    if let Some(initrd) = initrd.filter(|i| !i.is_empty()) {
        let limit = if hdr.initrd_addr_max != 0 {
            hdr.initrd_addr_max as u64
        } else {
            INITRD_ADDR_MAX
        };
        let size = initrd.len() as u64;
        // The highest page-aligned spot in RAM below the limit, above the kernel.
        let at = e820
            .iter()
            .filter_map(|e| {
                let end = (e.addr + e.size).min(limit + 1);
                let start = end.checked_sub(size)? & !0xfff;
                (start >= e.addr.max(loaded.kernel_end)).then_some(start)
            })
            .max()
            .ok_or_else(|| too_big("initrd"))?;
        vm.write(at, initrd)?;
        hdr.ramdisk_image = at as u32;
        hdr.ramdisk_size = size as u32;
        initrd_at = (at, size);
    }

    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: acpi::RSDP_ADDR,
        ..Default::default()
    };
    if e820.len() > params.e820_table.len() {
        return Err(Error::invalid("loadLinux", "too many memory regions for the e820 map"));
    }
    params.e820_table[..e820.len()].copy_from_slice(&e820);
    params.e820_entries = e820.len() as u8;
    LinuxBootConfigurator::write_bootparams(&BootParams::new(&params, GuestAddress(ZERO_PAGE_ADDR)), &mem)
        .map_err(|_| too_big("zero page"))?;
    vm.write(super::mptable::MPTABLE_ADDR, &super::mptable::mptable(cpus))
        .map_err(|_| too_big("MP table"))?;
    let tables = acpi::acpi_tables(&acpi::Machine { cpus, virtio: &slots }).ok_or_else(|| too_big("ACPI tables"))?;
    vm.write(acpi::RSDP_ADDR, &tables).map_err(|_| too_big("ACPI tables"))?;

    Ok(LinuxBoot {
        entry,
        zero_page: ZERO_PAGE_ADDR,
        kernel_end: loaded.kernel_end,
        initrd: initrd_at,
    })
}

/// Puts the boot vcpu (id 0) at the kernel's 64-bit entry: long mode with the identity
/// map, RSI = the zero page, the stack below the page tables, a clean FPU. Every other
/// vcpu stays as created, waiting for the kernel's INIT/SIPI.
pub fn start_linux(vcpu: &KvmVcpu, boot: &LinuxBoot) -> Result<()> {
    if vcpu.id() != 0 {
        return Ok(());
    }
    vcpu.setup_long_mode()?;
    vcpu.set_regs(&kvm_regs {
        rip: boot.entry,
        rsi: boot.zero_page,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rflags: 2,
        ..Default::default()
    })?;
    vcpu.set_fpu(&kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    })
}
