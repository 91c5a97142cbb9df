//! Every fixed guest physical address of an arm64 machine, in one place. The low 2 GiB
//! hold devices (QEMU `virt`'s places for the GIC and the UART), RAM starts at 2 GiB as
//! in crosvm and Firecracker, and the virtio windows follow the RAM's end (see
//! `vmm::virtio::mmio_slot`).

/// The GIC distributor (64 KiB on v3, 4 KiB on v2).
pub const GIC_DIST: u64 = 0x0800_0000;
/// GICv2's CPU interface (8 KiB).
pub const GIC_V2_CPU: u64 = 0x0801_0000;
/// GICv3's redistributors, 128 KiB per vcpu, up to [`UART_ADDR`].
pub const GIC_V3_REDIST: u64 = 0x080a_0000;
/// One GICv3 redistributor (its RD and SGI frames).
pub const GIC_V3_REDIST_SIZE: u64 = 0x2_0000;
/// How many vcpus the redistributor region has room for.
pub const MAX_GIC_V3_CPUS: usize = ((UART_ADDR - GIC_V3_REDIST) / GIC_V3_REDIST_SIZE) as usize;
/// GICv2 serves at most 8 CPUs.
pub const MAX_GIC_V2_CPUS: usize = 8;
/// Interrupt ids the GIC has: 32 private (SGIs and PPIs) and 96 shared.
pub const GIC_NR_IRQS: u32 = 128;
/// The first shared peripheral interrupt's id: irqfd and `KVM_IRQ_LINE` line `n` is
/// SPI `n`, id `32 + n`.
pub const GIC_SPI_BASE: u32 = 32;

/// The 16550 UART's registers (one byte each).
pub const UART_ADDR: u64 = 0x0900_0000;
/// The UART's window.
pub const UART_SIZE: u64 = 0x1000;
/// The UART's interrupt line (SPI 4, the x86 COM1's line number).
pub const UART_IRQ: u32 = 4;

/// Guest RAM starts here.
pub const RAM_START: u64 = 0x8000_0000;
/// The device tree's room, at the end of RAM (2 MiB aligned, as Linux maps it).
pub const FDT_MAX_SIZE: u64 = 0x20_0000;
/// The architected timer's private interrupts (PPI numbers): secure and non-secure
/// physical, virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
