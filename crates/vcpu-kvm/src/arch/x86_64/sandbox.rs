//! The sandbox machine: a guest function runs in 64-bit long mode at CPL 3 (so compiled
//! code, SSE included, runs natively rather than through KVM's instruction emulator on
//! hosts that emulate kernel mode), over page tables only the host writes. Page 0 is not
//! mapped (a null dereference faults); the structures below `KERNEL_END` are
//! supervisor-only; the rest of RAM is the guest's. An exception lands in a four-
//! instruction ring-0 stub that reports it through the hypercall port with the CPU's
//! frame on the ring-0 stack. Pure data: the VMM layer writes it.
//!
//! Guest-side mirror: `guests/sdk/vcpu_guest.h` (the mailbox and the hypercall ids).

use kvm_bindings::kvm_sregs;

use super::long_mode::{gdt_entry, segment_from_gdt};

/// The GDT: null, kernel code and data, user code and data, then the 16-byte TSS entry.
pub const GDT_ADDR: u64 = 0x1000;
/// The TSS, then its I/O permission bitmap (which lets ring 3 reach only the
/// hypercall port).
pub const TSS_ADDR: u64 = 0x1100;
/// The IDT: the 32 exception vectors.
pub const IDT_ADDR: u64 = 0x4000;
/// One 16-byte stub per exception vector, then the common tail.
pub const STUBS_ADDR: u64 = 0x4200;
/// The top of the ring-0 stack the CPU switches to for an exception (TSS.RSP0).
pub const RING0_STACK_TOP: u64 = 0x6000;
/// The page tables: PML4, PDPT, one page directory (1 GiB), one page table (the first
/// 2 MiB in 4 KiB pages, so page 0 and the structures above can differ from the rest).
pub const PML4_ADDR: u64 = 0x6000;
const PDPT_ADDR: u64 = 0x7000;
const PD_ADDR: u64 = 0x8000;
const PT_ADDR: u64 = 0x9000;
/// Everything below is supervisor-only.
pub const KERNEL_END: u64 = 0x10000;
/// The mailbox the host and the guest runtime exchange calls through.
pub const MAILBOX_ADDR: u64 = 0x10_0000;
/// Its size: the arguments of the calls in flight must fit.
pub const MAILBOX_SIZE: u64 = 0x10_0000;
/// The guest's ELF segments go at or above this address.
pub const LOAD_MIN: u64 = 0x20_0000;
/// The least and the most guest RAM a sandbox has (one page directory maps 1 GiB).
pub const MIN_MEMORY: u64 = 4 << 20;
/// See [`MIN_MEMORY`].
pub const MAX_MEMORY: u64 = 1 << 30;

/// The sandbox protocol's hypercall ids (`eax` at the hypercall port).
pub mod hypercall {
    /// The runtime is ready: its mailbox header names its exports.
    pub const READY: u32 = 0x5342_0001;
    /// A call returned: `rbx` = the guest address of its result value.
    pub const RETURN: u32 = 0x5342_0002;
    /// A host call: `rbx`/`rcx` = the name, `rsi`/`rdi` = the argument values.
    pub const HOST_CALL: u32 = 0x5342_0003;
    /// An exception (from a ring-0 stub): the CPU's frame is on the ring-0 stack.
    pub const FAULT: u32 = 0x5342_0004;
    /// The runtime found no command in the mailbox and waits.
    pub const WAIT: u32 = 0x5342_0005;
}

const KERNEL_CODE: u16 = 0x08;
const USER_CODE: u16 = 0x18 | 3;
const USER_DATA: u16 = 0x20 | 3;
const TSS_SELECTOR: u16 = 0x28;
/// The TSS proper, then one bit per port (set = refused), then the terminating 0xff.
const TSS_SIZE: usize = 0x68;
const IO_BITMAP_SIZE: usize = 65536 / 8 + 1;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const USER: u64 = 4;
const HUGE: u64 = 1 << 7;

/// The GDT's entries.
fn gdt() -> [u64; 7] {
    let tss_limit = (TSS_SIZE + IO_BITMAP_SIZE - 1) as u32;
    [
        0,
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0xa0fb, 0, 0xfffff),
        gdt_entry(0xc0f3, 0, 0xfffff),
        gdt_entry(0x0089, TSS_ADDR as u32, tss_limit),
        TSS_ADDR >> 32,
    ]
}

/// The GDT's bytes, for [`GDT_ADDR`].
pub fn gdt_bytes() -> Vec<u8> {
    gdt().iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// The TSS and its I/O bitmap, for [`TSS_ADDR`]: ring 3 may use `port`..`port + 3` (a
/// 32-bit `out`) and no other port.
pub fn tss_bytes(port: u16) -> Vec<u8> {
    let mut tss = vec![0u8; TSS_SIZE + IO_BITMAP_SIZE];
    tss[4..12].copy_from_slice(&RING0_STACK_TOP.to_le_bytes());
    tss[0x66..0x68].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes());
    let bitmap = &mut tss[TSS_SIZE..];
    bitmap.fill(0xff);
    for p in port as usize..(port as usize + 4).min(65536) {
        bitmap[p / 8] &= !(1 << (p % 8));
    }
    tss
}

/// Whether the CPU pushes an error code for exception `vector`.
fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// The IDT (interrupt gates to the stubs, ring 0) and the stubs' code, for
/// [`IDT_ADDR`] and [`STUBS_ADDR`]. Each stub pushes a zero in place of a missing error
/// code and its vector, then jumps to the tail: `mov edx, port; mov eax, FAULT;
/// out dx, eax; hlt; jmp $-1`. On the ring-0 stack the host finds: vector, error code,
/// RIP, CS, RFLAGS, RSP, SS.
pub fn idt_and_stubs(port: u16) -> (Vec<u8>, Vec<u8>) {
    let tail = STUBS_ADDR + 32 * 16;
    let mut idt = Vec::with_capacity(32 * 16);
    let mut stubs = Vec::with_capacity(32 * 16 + 16);
    for vector in 0..32u8 {
        let at = STUBS_ADDR + vector as u64 * 16;
        let gate = (at & 0xffff) | ((KERNEL_CODE as u64) << 16) | (0x8e << 40) | (((at >> 16) & 0xffff) << 48);
        idt.extend_from_slice(&gate.to_le_bytes());
        idt.extend_from_slice(&(at >> 32).to_le_bytes());
        let mut stub = Vec::with_capacity(16);
        if !has_error_code(vector) {
            stub.extend_from_slice(&[0x6a, 0x00]); // push 0
        }
        stub.extend_from_slice(&[0x6a, vector]); // push vector
        let next = at + stub.len() as u64 + 5;
        stub.push(0xe9); // jmp rel32
        stub.extend_from_slice(&((tail as i64 - next as i64) as i32).to_le_bytes());
        stub.resize(16, 0xcc);
        stubs.extend_from_slice(&stub);
    }
    stubs.push(0xba); // mov edx, imm32
    stubs.extend_from_slice(&(port as u32).to_le_bytes());
    stubs.push(0xb8); // mov eax, imm32
    stubs.extend_from_slice(&hypercall::FAULT.to_le_bytes());
    stubs.extend_from_slice(&[0xef, 0xf4, 0xeb, 0xfd]); // out dx, eax; hlt; jmp hlt
    (idt, stubs)
}

/// The page tables as (guest address, bytes) for `memory` bytes of RAM (a multiple of
/// 2 MiB, at most [`MAX_MEMORY`]): page 0 absent, `[0x1000, KERNEL_END)` supervisor,
/// the rest user, nothing mapped past the end of RAM.
pub fn page_tables(memory: u64) -> [(u64, Vec<u8>); 4] {
    let entry = |v: u64| v.to_le_bytes();
    let pml4 = entry(PDPT_ADDR | PRESENT | WRITABLE | USER).to_vec();
    let pdpt = entry(PD_ADDR | PRESENT | WRITABLE | USER).to_vec();
    let pd = (0..memory >> 21)
        .flat_map(|i| match i {
            0 => entry(PT_ADDR | PRESENT | WRITABLE | USER),
            _ => entry((i << 21) | PRESENT | WRITABLE | USER | HUGE),
        })
        .collect();
    let pt = (0..512u64)
        .flat_map(|i| {
            let at = i << 12;
            match at {
                0 => entry(0),
                _ if at < KERNEL_END => entry(at | PRESENT | WRITABLE),
                _ => entry(at | PRESENT | WRITABLE | USER),
            }
        })
        .collect();
    [(PML4_ADDR, pml4), (PDPT_ADDR, pdpt), (PD_ADDR, pd), (PT_ADDR, pt)]
}

/// Puts `sregs` in long mode at CPL 3 over the sandbox's tables. CR0.MP and CR4's
/// OSFXSR/OSXMMEXCPT let the guest's compiled code use SSE.
pub fn set_user_mode(sregs: &mut kvm_sregs) {
    let gdt = gdt();
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 32 * 16 - 1;
    sregs.cs = segment_from_gdt(gdt[3], USER_CODE);
    let data = segment_from_gdt(gdt[4], USER_DATA);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(gdt[5], TSS_SELECTOR);
    sregs.cr0 = 1 | 2 | (1 << 4) | (1 << 5) | (1 << 31); // PE MP ET NE PG
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = (1 << 5) | (1 << 9) | (1 << 10); // PAE OSFXSR OSXMMEXCPT
    sregs.efer = (1 << 8) | (1 << 10); // LME LMA
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_3_reaches_only_the_hypercall_port() {
        let tss = tss_bytes(0x500);
        let allowed = |p: usize| tss[TSS_SIZE + p / 8] & (1 << (p % 8)) == 0;
        assert!((0x500..0x504).all(allowed));
        assert!(!allowed(0x4ff) && !allowed(0x504) && !allowed(0x3f8));
        assert_eq!(tss[TSS_SIZE + IO_BITMAP_SIZE - 1], 0xff);
        assert_eq!(u64::from_le_bytes(tss[4..12].try_into().unwrap()), RING0_STACK_TOP);
    }

    #[test]
    fn page_zero_is_absent_and_the_tables_are_the_hosts() {
        let [_, _, (_, pd), (_, pt)] = page_tables(16 << 20);
        assert_eq!(pd.len(), 8 * 8);
        assert_eq!(u64::from_le_bytes(pt[0..8].try_into().unwrap()), 0);
        let page = |a: u64| u64::from_le_bytes(pt[(a >> 12) as usize * 8..][..8].try_into().unwrap());
        assert_eq!(page(PML4_ADDR) & USER, 0);
        assert_eq!(page(MAILBOX_ADDR) & (USER | PRESENT), USER | PRESENT);
    }

    #[test]
    fn every_stub_reaches_the_tail() {
        let (idt, stubs) = idt_and_stubs(0x500);
        assert_eq!(idt.len(), 512);
        for v in 0..32usize {
            let stub = &stubs[v * 16..];
            let jmp = if has_error_code(v as u8) { 2 } else { 4 };
            assert_eq!(stub[jmp], 0xe9);
            let rel = i32::from_le_bytes(stub[jmp + 1..jmp + 5].try_into().unwrap()) as i64;
            assert_eq!((v * 16 + jmp + 5) as i64 + rel, 512);
        }
        assert_eq!(stubs[512], 0xba);
    }
}
