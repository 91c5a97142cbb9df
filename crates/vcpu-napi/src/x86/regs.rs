//! General, segment and control registers as JS objects, and back.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::kvm_bindings::*;

use crate::args::{big, small, u64_of};
use crate::error::{invalid, IntoNapi, Result};
use crate::vcpu::NativeVcpu;

/// General-purpose registers (`kvm_regs`).
#[napi(object)]
pub struct Regs {
    /// `rax`.
    pub rax: BigInt,
    /// `rbx`.
    pub rbx: BigInt,
    /// `rcx`.
    pub rcx: BigInt,
    /// `rdx`.
    pub rdx: BigInt,
    /// `rsi`.
    pub rsi: BigInt,
    /// `rdi`.
    pub rdi: BigInt,
    /// `rsp`.
    pub rsp: BigInt,
    /// `rbp`.
    pub rbp: BigInt,
    /// `r8`.
    pub r8: BigInt,
    /// `r9`.
    pub r9: BigInt,
    /// `r10`.
    pub r10: BigInt,
    /// `r11`.
    pub r11: BigInt,
    /// `r12`.
    pub r12: BigInt,
    /// `r13`.
    pub r13: BigInt,
    /// `r14`.
    pub r14: BigInt,
    /// `r15`.
    pub r15: BigInt,
    /// Instruction pointer.
    pub rip: BigInt,
    /// Flags register (bit 1 is always set).
    pub rflags: BigInt,
}

/// Converts `Regs` from and to `kvm_regs`, field by field.
macro_rules! regs_object {
    ($($f:ident),*) => {

        fn regs_to_js(r: &kvm_regs) -> Regs {
            Regs { $($f: big(r.$f),)* }
        }

        fn regs_from_js(r: &Regs) -> Result<kvm_regs> {
            Ok(kvm_regs { $($f: u64_of("setRegs", stringify!($f), &r.$f)?,)* })
        }
    };
}
regs_object!(rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags);

/// A segment register (`kvm_segment`).
#[napi(object)]
pub struct Segment {
    /// Base address.
    pub base: BigInt,
    /// Limit.
    pub limit: u32,
    /// Selector.
    pub selector: u32,
    /// Segment type (4 bits).
    #[napi(js_name = "type")]
    pub type_: u32,
    /// Present bit.
    pub present: u32,
    /// Descriptor privilege level (0-3).
    pub dpl: u32,
    /// Default operation size (1 = 32-bit).
    pub db: u32,
    /// Descriptor type (1 = code or data).
    pub s: u32,
    /// Long mode (64-bit code).
    pub l: u32,
    /// Granularity (1 = 4 KiB units).
    pub g: u32,
    /// Available bit.
    pub avl: u32,
    /// Unusable (null) segment.
    pub unusable: u32,
}

/// A descriptor table register (`kvm_dtable`).
#[napi(object)]
pub struct DTable {
    /// Base address.
    pub base: BigInt,
    /// Limit.
    pub limit: u32,
}

/// Special registers (`kvm_sregs`).
#[napi(object)]
pub struct Sregs {
    /// Code segment.
    pub cs: Segment,
    /// Data segment.
    pub ds: Segment,
    /// Extra segment.
    pub es: Segment,
    /// FS segment.
    pub fs: Segment,
    /// GS segment.
    pub gs: Segment,
    /// Stack segment.
    pub ss: Segment,
    /// Task register.
    pub tr: Segment,
    /// Local descriptor table.
    pub ldt: Segment,
    /// Global descriptor table.
    pub gdt: DTable,
    /// Interrupt descriptor table.
    pub idt: DTable,
    /// Control register 0.
    pub cr0: BigInt,
    /// Control register 2 (page-fault address).
    pub cr2: BigInt,
    /// Control register 3 (page-table root).
    pub cr3: BigInt,
    /// Control register 4.
    pub cr4: BigInt,
    /// Control register 8 (task priority).
    pub cr8: BigInt,
    /// Extended feature enable register.
    pub efer: BigInt,
    /// The APIC base MSR.
    pub apic_base: BigInt,
    /// Pending external interrupts, one bit per vector (4 × 64 bits).
    pub interrupt_bitmap: Vec<BigInt>,
}

fn segment_to_js(s: &kvm_segment) -> Segment {
    Segment {
        base: big(s.base),
        limit: s.limit,
        selector: s.selector.into(),
        type_: s.type_.into(),
        present: s.present.into(),
        dpl: s.dpl.into(),
        db: s.db.into(),
        s: s.s.into(),
        l: s.l.into(),
        g: s.g.into(),
        avl: s.avl.into(),
        unusable: s.unusable.into(),
    }
}

fn segment_from_js(s: &Segment) -> Result<kvm_segment> {
    const OP: &str = "setSregs";
    Ok(kvm_segment {
        base: u64_of(OP, "base", &s.base)?,
        limit: s.limit,
        selector: small(OP, "selector", s.selector, 0xffff)? as u16,
        type_: small(OP, "type", s.type_, 15)? as u8,
        present: small(OP, "present", s.present, 1)? as u8,
        dpl: small(OP, "dpl", s.dpl, 3)? as u8,
        db: small(OP, "db", s.db, 1)? as u8,
        s: small(OP, "s", s.s, 1)? as u8,
        l: small(OP, "l", s.l, 1)? as u8,
        g: small(OP, "g", s.g, 1)? as u8,
        avl: small(OP, "avl", s.avl, 1)? as u8,
        unusable: small(OP, "unusable", s.unusable, 1)? as u8,
        padding: 0,
    })
}

fn dtable_from_js(t: &DTable) -> Result<kvm_dtable> {
    Ok(kvm_dtable {
        base: u64_of("setSregs", "base", &t.base)?,
        limit: small("setSregs", "limit", t.limit, 0xffff)? as u16,
        padding: [0; 3],
    })
}

fn sregs_to_js(s: &kvm_sregs) -> Sregs {
    let dt = |t: &kvm_dtable| DTable {
        base: big(t.base),
        limit: t.limit.into(),
    };
    Sregs {
        cs: segment_to_js(&s.cs),
        ds: segment_to_js(&s.ds),
        es: segment_to_js(&s.es),
        fs: segment_to_js(&s.fs),
        gs: segment_to_js(&s.gs),
        ss: segment_to_js(&s.ss),
        tr: segment_to_js(&s.tr),
        ldt: segment_to_js(&s.ldt),
        gdt: dt(&s.gdt),
        idt: dt(&s.idt),
        cr0: big(s.cr0),
        cr2: big(s.cr2),
        cr3: big(s.cr3),
        cr4: big(s.cr4),
        cr8: big(s.cr8),
        efer: big(s.efer),
        apic_base: big(s.apic_base),
        interrupt_bitmap: s.interrupt_bitmap.iter().map(|w| big(*w)).collect(),
    }
}

fn sregs_from_js(s: &Sregs) -> Result<kvm_sregs> {
    const OP: &str = "setSregs";
    let mut bitmap = [0u64; 4];
    if s.interrupt_bitmap.len() != 4 {
        return Err(invalid(OP, "interruptBitmap must hold 4 bigints"));
    }
    for (w, v) in bitmap.iter_mut().zip(&s.interrupt_bitmap) {
        *w = u64_of(OP, "interruptBitmap", v)?;
    }
    Ok(kvm_sregs {
        cs: segment_from_js(&s.cs)?,
        ds: segment_from_js(&s.ds)?,
        es: segment_from_js(&s.es)?,
        fs: segment_from_js(&s.fs)?,
        gs: segment_from_js(&s.gs)?,
        ss: segment_from_js(&s.ss)?,
        tr: segment_from_js(&s.tr)?,
        ldt: segment_from_js(&s.ldt)?,
        gdt: dtable_from_js(&s.gdt)?,
        idt: dtable_from_js(&s.idt)?,
        cr0: u64_of(OP, "cr0", &s.cr0)?,
        cr2: u64_of(OP, "cr2", &s.cr2)?,
        cr3: u64_of(OP, "cr3", &s.cr3)?,
        cr4: u64_of(OP, "cr4", &s.cr4)?,
        cr8: u64_of(OP, "cr8", &s.cr8)?,
        efer: u64_of(OP, "efer", &s.efer)?,
        apic_base: u64_of(OP, "apicBase", &s.apic_base)?,
        interrupt_bitmap: bitmap,
    })
}

#[napi]
impl NativeVcpu {
    #[napi]
    pub fn get_regs(&self) -> Result<Regs> {
        self.with("getRegs", |v| Ok(regs_to_js(&v.get_regs().js()?)))
    }

    #[napi]
    pub fn set_regs(&self, regs: Regs) -> Result<()> {
        let regs = regs_from_js(&regs)?;
        self.with("setRegs", |v| v.set_regs(&regs).js())
    }

    #[napi]
    pub fn get_sregs(&self) -> Result<Sregs> {
        self.with("getSregs", |v| Ok(sregs_to_js(&v.get_sregs().js()?)))
    }

    #[napi]
    pub fn set_sregs(&self, sregs: Sregs) -> Result<()> {
        let sregs = sregs_from_js(&sregs)?;
        self.with("setSregs", |v| v.set_sregs(&sregs).js())
    }
}
