//! The state that puts a fresh vcpu straight into 64-bit long mode: a flat GDT,
//! identity-mapped page tables for the first 4 GiB, and the control registers.

use kvm_bindings::{kvm_segment, kvm_sregs};

use super::layout::*;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_HUGE: u64 = 1 << 7;

/// A GDT entry from its parts (flags in bits 8..16 of `flags`: access byte, then
/// granularity nibble in bits 12..16 as the CPU lays them out).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
}

/// The helper's GDT: null, 64-bit code, data, 64-bit TSS.
pub const GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// The segment register that matches a GDT entry, the way the CPU would load it.
pub fn segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: {
            let raw = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
            if (entry >> 55) & 1 == 1 {
                (raw << 12) | 0xfff
            } else {
                raw
            }
        },
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: ((entry >> 55) & 1) as u8,
        avl: ((entry >> 52) & 1) as u8,
        unusable: (present == 0) as u8,
        padding: 0,
    }
}

/// The page tables as (guest address, bytes) pairs: PML4 → PDPT → page directories of
/// 2 MiB pages identity-mapping the first `PD_COUNT` GiB.
pub fn page_tables() -> [(u64, Vec<u8>); 3] {
    let pml4 = (PDPT_ADDR | PTE_PRESENT | PTE_WRITABLE).to_le_bytes().to_vec();
    let pdpt = (0..PD_COUNT)
        .flat_map(|i| ((PD_ADDR + i * 0x1000) | PTE_PRESENT | PTE_WRITABLE).to_le_bytes())
        .collect();
    let pds = (0..512 * PD_COUNT)
        .flat_map(|i| ((i << 21) | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE).to_le_bytes())
        .collect();
    [(PML4_ADDR, pml4), (PDPT_ADDR, pdpt), (PD_ADDR, pds)]
}

/// The GDT's bytes, for `GDT_ADDR`.
pub fn gdt_bytes() -> Vec<u8> {
    GDT.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// Puts `sregs` into 64-bit long mode with the helper's GDT, IDT and page tables.
pub fn set_long_mode(sregs: &mut kvm_sregs) {
    let code = segment_from_gdt(GDT[1], CODE_SELECTOR);
    let data = segment_from_gdt(GDT[2], DATA_SELECTOR);
    let tss = segment_from_gdt(GDT[3], TSS_SELECTOR);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of_val(&GDT) - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_64_bit() {
        let cs = segment_from_gdt(GDT[1], CODE_SELECTOR);
        assert_eq!((cs.l, cs.db, cs.present, cs.s, cs.type_), (1, 0, 1, 1, 0xb));
        assert_eq!(cs.limit, 0xffff_ffff);
    }

    #[test]
    fn page_directories_map_first_4_gib() {
        let [_, (_, pdpt), (addr, pds)] = page_tables();
        assert_eq!(addr, PD_ADDR);
        assert_eq!(pdpt.len(), 8 * PD_COUNT as usize);
        assert_eq!(pds.len(), 4096 * PD_COUNT as usize);
        let last = u64::from_le_bytes(pds[pds.len() - 8..].try_into().unwrap());
        assert_eq!(last & !0xfff, (4 << 30) - (2 << 20));
    }
}
