//! Every fixed guest physical address the library uses, in one place.

/// The GDT written by the long-mode helper (4 entries: null, code64, data, TSS).
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT: any exception triple-faults, a clean `Shutdown`.
pub const IDT_ADDR: u64 = 0x520;
/// The long-mode page tables: PML4, one PDPT, four page directories of 2 MiB pages.
pub const PML4_ADDR: u64 = 0x9000;
/// The page-directory-pointer table.
pub const PDPT_ADDR: u64 = 0xA000;
/// The first of four consecutive page directories (4 × 512 × 2 MiB = the first 4 GiB,
/// identity mapped, so the LAPIC and IOAPIC pages below 4 GiB are reachable).
pub const PD_ADDR: u64 = 0xB000;
/// How many page directories (GiB) the helper maps.
pub const PD_COUNT: u64 = 4;
/// The first byte after the helper's structures: guest RAM must cover `[0, LOW_END)`.
pub const LOW_END: u64 = PD_ADDR + PD_COUNT * 0x1000;
/// The TSS KVM needs on Intel hosts (three pages), placed just below the 4 GiB hole's
/// top, where no guest RAM is expected.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// KVM's identity-map page (Intel real mode without unrestricted guest), below the TSS.
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// Selector of the 64-bit code segment in the helper's GDT.
pub const CODE_SELECTOR: u16 = 0x08;
/// Selector of the data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// Selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x18;

/// Where the Linux boot protocol's zero page (`boot_params`) goes.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// The stack pointer a booted kernel starts with (just below the page tables).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// The longest command line, with its NUL.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// Start of the BIOS data that a PC keeps below 1 MiB: RAM stops here in the e820 map.
pub const EBDA_START: u64 = 0x9fc00;
/// Where the kernel is loaded (1 MiB, the protocol's `HIGH_MEMORY`).
pub const KERNEL_ADDR: u64 = 0x10_0000;
/// The highest address an initrd may end at, unless the kernel says otherwise.
pub const INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// The local APIC's registers, as every x86 CPU has them.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// The in-kernel IOAPIC's registers.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
