//! The Intel MultiProcessor Specification 1.4 table, which tells a kernel without ACPI
//! how many CPUs there are and where the IOAPIC is: a floating pointer and a
//! configuration table with one entry per processor, the ISA bus, the IOAPIC, and the
//! 16 ISA interrupts routed to it. Placed in the EBDA, which the e820 map keeps out of
//! RAM.

use crate::arch::x86_64::layout::{EBDA_START, IOAPIC_ADDR, LAPIC_ADDR};

const SPEC_REV: u8 = 4; // MP spec 1.4
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9); // FPU, APIC
const CPU_SIGNATURE: u32 = 0x600; // family 6
const ISA_IRQS: u8 = 16;

/// Where the table goes.
pub const MPTABLE_ADDR: u64 = EBDA_START;
/// The most CPUs the table describes (APIC ids are 8 bits; one is the IOAPIC's).
pub const MAX_CPUS: usize = 254;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_sub(*b))
}

/// The table for `cpus` processors (APIC ids 0..cpus, 0 the bootstrap one), as bytes
/// to write at [`MPTABLE_ADDR`].
pub fn mptable(cpus: usize) -> Vec<u8> {
    let cpus = cpus.clamp(1, MAX_CPUS);
    let ioapic_id = cpus as u8;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend([0, id as u8, APIC_VERSION, flags]);
        entries.extend(CPU_SIGNATURE.to_le_bytes());
        entries.extend(CPU_FEATURES.to_le_bytes());
        entries.extend([0u8; 8]);
        count += 1;
    }
    entries.extend([1, 0]); // bus 0
    entries.extend(*b"ISA   ");
    entries.extend([2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend((IOAPIC_ADDR as u32).to_le_bytes());
    count += 2;
    for irq in 0..ISA_IRQS {
        // An INT from ISA IRQ n to IOAPIC pin n, conforming polarity and trigger.
        entries.extend([3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // ExtINT to LINT0 of every local APIC, NMI to LINT1 of every local APIC.
    entries.extend([4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend([4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    const HEADER: usize = 44;
    const POINTER: usize = 16;
    let mut table = Vec::with_capacity(HEADER + entries.len());
    table.extend(*b"PCMP");
    table.extend(((HEADER + entries.len()) as u16).to_le_bytes());
    table.extend([SPEC_REV, 0]); // checksum below
    table.extend(*b"VCPU    ");
    table.extend(*b"VCPU-JS     ");
    table.extend([0u8; 4]); // OEM table pointer
    table.extend([0u8; 2]); // OEM table size
    table.extend(count.to_le_bytes());
    table.extend((LAPIC_ADDR as u32).to_le_bytes());
    table.extend([0u8; 4]); // extended table length and checksum, reserved
    table.extend(entries);
    table[7] = checksum(&table);

    let mut pointer = Vec::with_capacity(POINTER);
    pointer.extend(*b"_MP_");
    pointer.extend(((MPTABLE_ADDR as usize + POINTER) as u32).to_le_bytes());
    pointer.extend([1, SPEC_REV, 0, 0, 0, 0, 0, 0]); // length 1 × 16, checksum below
    pointer[10] = checksum(&pointer);

    let mut out = pointer;
    out.extend(table);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_to_zero_and_counts_entries() {
        let t = mptable(4);
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(t[..16].iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 4 + 2 + 16 + 2);
        assert_eq!(table[44 + 3], CPU_ENABLED | CPU_BOOTSTRAP);
        assert!(table.len() + 16 <= 0x400, "fits in the EBDA's first KiB");
    }
}
