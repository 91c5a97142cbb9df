//! The ACPI tables of an x86 Linux machine, built with rust-vmm's acpi_tables: what a
//! kernel with ACPI reads instead of the MP table, and the only way a stock
//! distribution kernel (built without `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`) finds the
//! virtio-mmio devices. A hardware-reduced machine, as Firecracker's and Cloud
//! Hypervisor's are: RSDP → XSDT → FADT (→ DSDT) and MADT. The DSDT names COM1
//! (`PNP0501`) and each virtio device (`LNRO0005`, the ID Linux's virtio_mmio driver
//! matches). All of it sits in the BIOS area below 1 MiB, which the e820 map keeps out of
//! RAM, where a kernel also looks for the RSDP by itself.

use acpi_tables::aml::{Device, EISAName, Interrupt, Memory32Fixed, Name, Path, ResourceTemplate, Scope, IO};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml, AmlSink};

use crate::arch::x86_64::layout::{IOAPIC_ADDR, LAPIC_ADDR};
use crate::vmm::devices::{COM1_BASE, COM1_IRQ};
use crate::vmm::virtio::MMIO_SIZE;

/// Where the RSDP goes: the start of the BIOS read-only area a kernel scans for it.
pub const RSDP_ADDR: u64 = 0x000e_0000;
/// How far the tables may reach (the end of the BIOS area, 1 MiB).
const TABLES_END: u64 = 0x0010_0000;

const OEM_ID: [u8; 6] = *b"VCPUJS";
const OEM_REVISION: u32 = 1;
/// The DSDT's revision: 2 and above give AML 64-bit integers.
const DSDT_REVISION: u8 = 2;

/// IA-PC boot architecture flags (FADT): an 8042 is there (its reset line is the
/// machine's reboot), no VGA, no MSI, no PCIe ASPM to touch.
const IAPC_8042: u16 = 1 << 1;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_PRESENT: u16 = 1 << 3;
const IAPC_PCIE_ASPM_CONTROLS: u16 = 1 << 4;

/// What the tables describe.
pub struct Machine<'a> {
    /// Processors, with APIC ids `0..cpus`.
    pub cpus: usize,
    /// Each virtio-mmio device's register window and interrupt line.
    pub virtio: &'a [(u64, u32)],
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut out = Vec::new();
    table.to_aml_bytes(&mut out);
    out
}

/// AML already encoded, to go inside a scope.
struct Encoded(Vec<u8>);

impl Aml for Encoded {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// The DSDT's AML: `\_SB_.COM1` and `\_SB_.VRnn` for each virtio device.
fn dsdt_aml(machine: &Machine) -> Vec<u8> {
    let mut devices = Vec::new();
    let com1_io = IO::new(COM1_BASE as u16, COM1_BASE as u16, 1, 8);
    let com1_irq = Interrupt::new(true, true, false, false, COM1_IRQ);
    let com1_crs = ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    Device::new(
        Path::new("COM1"),
        vec![
            &Name::new(Path::new("_HID"), &EISAName::new("PNP0501")),
            &Name::new(Path::new("_UID"), &aml::ZERO),
            &Name::new(Path::new("_CRS"), &com1_crs),
        ],
    )
    .to_aml_bytes(&mut devices);
    for (i, &(address, irq)) in machine.virtio.iter().enumerate() {
        let window = Memory32Fixed::new(true, address as u32, MMIO_SIZE as u32);
        // Edge-triggered, active high: an irqfd pulses the line.
        let line = Interrupt::new(true, true, false, false, irq);
        let crs = ResourceTemplate::new(vec![&window, &line]);
        Device::new(
            Path::new(&format!("VR{i:02X}")),
            vec![
                &Name::new(Path::new("_HID"), &"LNRO0005"),
                &Name::new(Path::new("_UID"), &(i as u64)),
                // Cache-coherent DMA, as every virtio device of a VM is.
                &Name::new(Path::new("_CCA"), &aml::ONE),
                &Name::new(Path::new("_CRS"), &crs),
            ],
        )
        .to_aml_bytes(&mut devices);
    }
    bytes(&Scope::new(Path::new("\\_SB_"), vec![&Encoded(devices)]))
}

/// The tables for `machine`, as one block of bytes to write at [`RSDP_ADDR`]; `None`
/// if they would not fit below 1 MiB (they take a few KiB for the most CPUs and devices
/// a machine has).
pub fn acpi_tables(machine: &Machine) -> Option<Vec<u8>> {
    // Each table 16-byte aligned after the RSDP, in the order they are linked.
    let align = |at: u64| at.next_multiple_of(16);
    let dsdt_at = align(RSDP_ADDR + Rsdp::len() as u64);
    let mut dsdt = Sdt::new(*b"DSDT", 36, DSDT_REVISION, OEM_ID, *b"VCPUDSDT", OEM_REVISION);
    dsdt.append_slice(&dsdt_aml(machine));
    let dsdt = bytes(&dsdt);

    let fadt_at = align(dsdt_at + dsdt.len() as u64);
    let mut fadt = FADTBuilder::new(OEM_ID, *b"VCPUFACP", OEM_REVISION)
        .dsdt_64(dsdt_at)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = (IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_PRESENT | IAPC_PCIE_ASPM_CONTROLS).into();
    let fadt = bytes(&fadt.finalize());

    let madt_at = align(fadt_at + fadt.len() as u64);
    let mut madt = MADT::new(
        OEM_ID,
        *b"VCPUMADT",
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR as u32),
    );
    for id in 0..machine.cpus {
        madt.add_structure(ProcessorLocalApic::new(id as u8, id as u8, EnabledStatus::Enabled));
    }
    // The IOAPIC takes the id after the CPUs', as in the MP table; its pins are GSIs 0-23.
    madt.add_structure(IoApic::new(machine.cpus as u8, IOAPIC_ADDR as u32, 0));
    let madt = bytes(&madt);

    let xsdt_at = align(madt_at + madt.len() as u64);
    let mut xsdt = XSDT::new(OEM_ID, *b"VCPUXSDT", OEM_REVISION);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    let xsdt = bytes(&xsdt);
    if xsdt_at + xsdt.len() as u64 > TABLES_END {
        return None;
    }

    let mut out = bytes(&Rsdp::new(OEM_ID, xsdt_at));
    for (at, table) in [(dsdt_at, dsdt), (fadt_at, fadt), (madt_at, madt), (xsdt_at, xsdt)] {
        out.resize((at - RSDP_ADDR) as usize, 0);
        out.extend(table);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table at guest address `at` inside `blob` (which starts at `RSDP_ADDR`),
    /// checked for its signature, its length and a zero checksum.
    fn table<'a>(blob: &'a [u8], at: u64, signature: &[u8; 4]) -> &'a [u8] {
        let start = (at - RSDP_ADDR) as usize;
        let header = &blob[start..start + 36];
        assert_eq!(&header[..4], signature);
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
        let table = &blob[start..start + len];
        let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        assert_eq!(sum, 0, "{} checksum", String::from_utf8_lossy(signature));
        table
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn tables_link_from_the_rsdp_and_describe_the_machine() {
        let virtio = [(0xd000_0000, 5), (0xd000_1000, 6), (0xd000_2000, 7)];
        let blob = acpi_tables(&Machine {
            cpus: 4,
            virtio: &virtio,
        })
        .unwrap();
        assert!(RSDP_ADDR + blob.len() as u64 <= TABLES_END);

        // RSDP (ACPI 2.0): both checksums, then the XSDT it names.
        assert_eq!(&blob[..8], b"RSD PTR ");
        assert_eq!(blob[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(blob[..36].iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        let xsdt = table(&blob, u64_at(&blob, 24), b"XSDT");
        let entries: Vec<u64> = (36..xsdt.len()).step_by(8).map(|at| u64_at(xsdt, at)).collect();
        assert_eq!(entries.len(), 2);

        // FADT: hardware-reduced, and its 64-bit DSDT pointer leads to the devices.
        let fadt = table(&blob, entries[0], b"FACP");
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        let dsdt = table(&blob, u64_at(fadt, 140), b"DSDT");
        assert_eq!(count(dsdt, b"LNRO0005"), virtio.len());
        assert_eq!(count(dsdt, b"_SB_"), 1);
        // COM1 as PNP0501, EISA-encoded: "PNP" 0x0501 is 0x41d0, 0x0105.
        assert_eq!(count(dsdt, &[0x0c, 0x41, 0xd0, 0x05, 0x01]), 1);

        // MADT: one local APIC per CPU and the IOAPIC.
        let madt = table(&blob, entries[1], b"APIC");
        let mut at = 44;
        let mut lapics = 0;
        let mut ioapics = 0;
        while at < madt.len() {
            match madt[at] {
                0 => lapics += 1,
                1 => ioapics += 1,
                kind => panic!("unexpected MADT entry {kind}"),
            }
            at += madt[at + 1] as usize;
        }
        assert_eq!((lapics, ioapics), (4, 1));
    }

    #[test]
    fn the_largest_machine_still_fits_below_one_mib() {
        let virtio: Vec<(u64, u32)> = (0..64).map(|i| (0xd000_0000 + i * 0x1000, 5 + i as u32)).collect();
        let blob = acpi_tables(&Machine {
            cpus: 254,
            virtio: &virtio,
        })
        .unwrap();
        assert!(RSDP_ADDR + blob.len() as u64 <= TABLES_END);
    }
}
