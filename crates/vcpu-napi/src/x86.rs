//! x86 register and device state: conversions between kvm-bindings structs and JS
//! objects (field names follow kvm-bindings, camelCase), and the `NativeVcpu` methods.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::kvm::GuestDebug as KvmGuestDebug;
use vcpu_kvm::kvm_bindings::*;

use crate::args::{big, u64_of};
use crate::error::{invalid, IntoNapi, Result};
use crate::kvm::CpuidEntry;
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

fn small(op: &str, name: &str, v: u32, max: u32) -> Result<u32> {
    if v > max {
        return Err(invalid(op, format!("{name} must be at most {max}, got {v}")));
    }
    Ok(v)
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

/// FPU state (`kvm_fpu`): `fpr` 8 × 16 bytes, `xmm` 16 × 16 bytes.
#[napi(object)]
pub struct Fpu {
    /// x87 registers: 8 × 16 bytes.
    pub fpr: Uint8Array,
    /// x87 control word.
    pub fcw: u32,
    /// x87 status word.
    pub fsw: u32,
    /// x87 abridged tag word.
    pub ftwx: u32,
    /// Last x87 opcode.
    pub last_opcode: u32,
    /// Last x87 instruction pointer.
    pub last_ip: BigInt,
    /// Last x87 data pointer.
    pub last_dp: BigInt,
    /// SSE registers: 16 × 16 bytes.
    pub xmm: Uint8Array,
    /// SSE control and status.
    pub mxcsr: u32,
}

/// One MSR.
#[napi(object)]
pub struct Msr {
    /// The MSR number.
    pub index: u32,
    /// The value.
    pub data: BigInt,
}

/// The local APIC's register page (`kvm_lapic_state`, 1024 bytes).
#[napi(object)]
pub struct Lapic {
    /// The 1024-byte register page.
    pub regs: Uint8Array,
}

/// Debug registers (`kvm_debugregs`).
#[napi(object)]
pub struct DebugRegs {
    /// Default operation size (1 = 32-bit).
    pub db: Vec<BigInt>,
    /// Debug status (DR6).
    pub dr6: BigInt,
    /// Debug control (DR7).
    pub dr7: BigInt,
    /// Flags.
    pub flags: u32,
}

/// One extended control register (`kvm_xcr`).
#[napi(object)]
pub struct Xcr {
    /// The XCR number (0 = XCR0).
    pub xcr: u32,
    /// The value.
    pub value: BigInt,
}

/// What `setGuestDebug` traps.
#[napi(object)]
pub struct GuestDebug {
    /// Turn guest debugging on (off clears everything); on by default when anything
    /// else is asked for.
    pub enable: Option<bool>,
    /// Exit with `Debug` after every instruction.
    pub single_step: Option<bool>,
    /// Exit with `Debug` on `int3`.
    pub software_breakpoints: Option<bool>,
    /// Up to four execution breakpoint addresses.
    pub hardware_breakpoints: Option<Vec<BigInt>>,
}

/// Pending exception state (`kvm_vcpu_events.exception`).
#[napi(object)]
pub struct ExceptionEvent {
    /// Being injected.
    pub injected: u32,
    /// Vector.
    pub nr: u32,
    /// Whether it has an error code.
    pub has_error_code: u32,
    /// Pending.
    pub pending: u32,
    /// The error code.
    pub error_code: u32,
}

/// Interrupt state (`kvm_vcpu_events.interrupt`).
#[napi(object)]
pub struct InterruptEvent {
    /// Being injected.
    pub injected: u32,
    /// Vector.
    pub nr: u32,
    /// Software interrupt.
    pub soft: u32,
    /// Interrupt shadow (after `sti` or `mov ss`).
    pub shadow: u32,
}

/// NMI state (`kvm_vcpu_events.nmi`).
#[napi(object)]
pub struct NmiEvent {
    /// Being injected.
    pub injected: u32,
    /// Pending.
    pub pending: u32,
    /// NMIs masked.
    pub masked: u32,
}

/// SMM state (`kvm_vcpu_events.smi`).
#[napi(object)]
pub struct SmiEvent {
    /// In system management mode.
    pub smm: u32,
    /// Pending.
    pub pending: u32,
    /// SMM entered inside an NMI handler.
    pub smm_inside_nmi: u32,
    /// An INIT is latched.
    pub latched_init: u32,
}

/// `kvm_vcpu_events`.
#[napi(object)]
pub struct VcpuEvents {
    /// Exception state.
    pub exception: ExceptionEvent,
    /// External interrupt state.
    pub interrupt: InterruptEvent,
    /// NMI state.
    pub nmi: NmiEvent,
    /// The SIPI vector.
    pub sipi_vector: u32,
    /// Flags.
    pub flags: u32,
    /// SMM state.
    pub smi: SmiEvent,
    /// A triple fault is pending.
    pub triple_fault_pending: u32,
    /// Whether `exceptionPayload` is valid.
    pub exception_has_payload: u32,
    /// The exception payload (CR2 or DR6).
    pub exception_payload: BigInt,
}

fn byte(op: &str, v: u32) -> Result<u8> {
    u8::try_from(v).map_err(|_| invalid(op, format!("{v} does not fit in a byte")))
}

fn copy_exact<const N: usize>(op: &str, name: &str, src: &[u8]) -> Result<[u8; N]> {
    src.try_into()
        .map_err(|_| invalid(op, format!("{name} must be {N} bytes, got {}", src.len())))
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

    #[napi]
    pub fn get_fpu(&self) -> Result<Fpu> {
        self.with("getFpu", |v| {
            let f = v.get_fpu().js()?;
            Ok(Fpu {
                fpr: Uint8Array::new(f.fpr.iter().flatten().copied().collect()),
                fcw: f.fcw.into(),
                fsw: f.fsw.into(),
                ftwx: f.ftwx.into(),
                last_opcode: f.last_opcode.into(),
                last_ip: big(f.last_ip),
                last_dp: big(f.last_dp),
                xmm: Uint8Array::new(f.xmm.iter().flatten().copied().collect()),
                mxcsr: f.mxcsr,
            })
        })
    }

    #[napi]
    pub fn set_fpu(&self, fpu: Fpu) -> Result<()> {
        const OP: &str = "setFpu";
        let fpr: [u8; 128] = copy_exact(OP, "fpr", &fpu.fpr)?;
        let xmm: [u8; 256] = copy_exact(OP, "xmm", &fpu.xmm)?;
        let mut f = kvm_fpu {
            fcw: small(OP, "fcw", fpu.fcw, 0xffff)? as u16,
            fsw: small(OP, "fsw", fpu.fsw, 0xffff)? as u16,
            ftwx: byte(OP, fpu.ftwx)?,
            last_opcode: small(OP, "lastOpcode", fpu.last_opcode, 0xffff)? as u16,
            last_ip: u64_of(OP, "lastIp", &fpu.last_ip)?,
            last_dp: u64_of(OP, "lastDp", &fpu.last_dp)?,
            mxcsr: fpu.mxcsr,
            ..Default::default()
        };
        for (dst, src) in f.fpr.iter_mut().zip(fpr.chunks_exact(16)) {
            dst.copy_from_slice(src);
        }
        for (dst, src) in f.xmm.iter_mut().zip(xmm.chunks_exact(16)) {
            dst.copy_from_slice(src);
        }
        self.with(OP, |v| v.set_fpu(&f).js())
    }

    #[napi]
    pub fn get_msrs(&self, indices: Vec<u32>) -> Result<Vec<Msr>> {
        self.with("getMsrs", |v| {
            Ok(v.get_msrs(&indices)
                .js()?
                .into_iter()
                .map(|(index, data)| Msr { index, data: big(data) })
                .collect())
        })
    }

    #[napi]
    pub fn set_msrs(&self, msrs: Vec<Msr>) -> Result<()> {
        let values = msrs
            .iter()
            .map(|m| Ok((m.index, u64_of("setMsrs", "data", &m.data)?)))
            .collect::<Result<Vec<_>>>()?;
        self.with("setMsrs", |v| v.set_msrs(&values).js())
    }

    #[napi]
    pub fn set_cpuid(&self, entries: Vec<CpuidEntry>) -> Result<()> {
        let entries: Vec<kvm_cpuid_entry2> = entries.iter().map(kvm_cpuid_entry2::from).collect();
        self.with("setCpuid", |v| v.set_cpuid(&entries).js())
    }

    #[napi]
    pub fn get_lapic(&self) -> Result<Lapic> {
        self.with("getLapic", |v| {
            let l = v.get_lapic().js()?;
            Ok(Lapic {
                regs: Uint8Array::new(l.regs.iter().map(|b| *b as u8).collect()),
            })
        })
    }

    #[napi]
    pub fn set_lapic(&self, lapic: Lapic) -> Result<()> {
        let regs: [u8; 1024] = copy_exact("setLapic", "regs", &lapic.regs)?;
        let l = kvm_lapic_state {
            regs: regs.map(|b| b as _),
        };
        self.with("setLapic", |v| v.set_lapic(&l).js())
    }

    #[napi]
    pub fn get_vcpu_events(&self) -> Result<VcpuEvents> {
        self.with("getVcpuEvents", |v| {
            let e = v.get_vcpu_events().js()?;
            Ok(VcpuEvents {
                exception: ExceptionEvent {
                    injected: e.exception.injected.into(),
                    nr: e.exception.nr.into(),
                    has_error_code: e.exception.has_error_code.into(),
                    pending: e.exception.pending.into(),
                    error_code: e.exception.error_code,
                },
                interrupt: InterruptEvent {
                    injected: e.interrupt.injected.into(),
                    nr: e.interrupt.nr.into(),
                    soft: e.interrupt.soft.into(),
                    shadow: e.interrupt.shadow.into(),
                },
                nmi: NmiEvent {
                    injected: e.nmi.injected.into(),
                    pending: e.nmi.pending.into(),
                    masked: e.nmi.masked.into(),
                },
                sipi_vector: e.sipi_vector,
                flags: e.flags,
                smi: SmiEvent {
                    smm: e.smi.smm.into(),
                    pending: e.smi.pending.into(),
                    smm_inside_nmi: e.smi.smm_inside_nmi.into(),
                    latched_init: e.smi.latched_init.into(),
                },
                triple_fault_pending: e.triple_fault.pending.into(),
                exception_has_payload: e.exception_has_payload.into(),
                exception_payload: big(e.exception_payload),
            })
        })
    }

    #[napi]
    pub fn set_vcpu_events(&self, e: VcpuEvents) -> Result<()> {
        const OP: &str = "setVcpuEvents";
        let mut k = kvm_vcpu_events::default();
        k.exception.injected = byte(OP, e.exception.injected)?;
        k.exception.nr = byte(OP, e.exception.nr)?;
        k.exception.has_error_code = byte(OP, e.exception.has_error_code)?;
        k.exception.pending = byte(OP, e.exception.pending)?;
        k.exception.error_code = e.exception.error_code;
        k.interrupt.injected = byte(OP, e.interrupt.injected)?;
        k.interrupt.nr = byte(OP, e.interrupt.nr)?;
        k.interrupt.soft = byte(OP, e.interrupt.soft)?;
        k.interrupt.shadow = byte(OP, e.interrupt.shadow)?;
        k.nmi.injected = byte(OP, e.nmi.injected)?;
        k.nmi.pending = byte(OP, e.nmi.pending)?;
        k.nmi.masked = byte(OP, e.nmi.masked)?;
        k.sipi_vector = e.sipi_vector;
        k.flags = e.flags;
        k.smi.smm = byte(OP, e.smi.smm)?;
        k.smi.pending = byte(OP, e.smi.pending)?;
        k.smi.smm_inside_nmi = byte(OP, e.smi.smm_inside_nmi)?;
        k.smi.latched_init = byte(OP, e.smi.latched_init)?;
        k.triple_fault.pending = byte(OP, e.triple_fault_pending)?;
        k.exception_has_payload = byte(OP, e.exception_has_payload)?;
        k.exception_payload = u64_of(OP, "exceptionPayload", &e.exception_payload)?;
        self.with(OP, |v| v.set_vcpu_events(&k).js())
    }

    #[napi]
    pub fn get_mp_state(&self) -> Result<u32> {
        self.with("getMpState", |v| v.get_mp_state().js())
    }

    #[napi]
    pub fn set_mp_state(&self, state: f64) -> Result<()> {
        let state = crate::args::uint("setMpState", "state", state, u32::MAX.into())? as u32;
        self.with("setMpState", |v| v.set_mp_state(state).js())
    }

    #[napi]
    pub fn get_debug_regs(&self) -> Result<DebugRegs> {
        self.with("getDebugRegs", |v| {
            let d = v.get_debug_regs().js()?;
            Ok(DebugRegs {
                db: d.db.iter().map(|r| big(*r)).collect(),
                dr6: big(d.dr6),
                dr7: big(d.dr7),
                flags: d.flags as u32,
            })
        })
    }

    #[napi]
    pub fn set_debug_regs(&self, d: DebugRegs) -> Result<()> {
        const OP: &str = "setDebugRegs";
        if d.db.len() != 4 {
            return Err(invalid(OP, "db must hold 4 bigints"));
        }
        let mut k = kvm_debugregs {
            dr6: u64_of(OP, "dr6", &d.dr6)?,
            dr7: u64_of(OP, "dr7", &d.dr7)?,
            flags: d.flags.into(),
            ..Default::default()
        };
        for (dst, src) in k.db.iter_mut().zip(&d.db) {
            *dst = u64_of(OP, "db", src)?;
        }
        self.with(OP, |v| v.set_debug_regs(&k).js())
    }

    #[napi]
    pub fn set_guest_debug(&self, debug: GuestDebug) -> Result<()> {
        const OP: &str = "setGuestDebug";
        let mut hardware_breakpoints = [None; 4];
        let bps = debug.hardware_breakpoints.unwrap_or_default();
        if bps.len() > 4 {
            return Err(invalid(OP, "at most 4 hardware breakpoints"));
        }
        for (dst, src) in hardware_breakpoints.iter_mut().zip(&bps) {
            *dst = Some(u64_of(OP, "hardwareBreakpoints", src)?);
        }
        let wanted = debug.single_step == Some(true) || debug.software_breakpoints == Some(true) || !bps.is_empty();
        let d = KvmGuestDebug {
            enable: debug.enable.unwrap_or(wanted),
            single_step: debug.single_step.unwrap_or(false),
            software_breakpoints: debug.software_breakpoints.unwrap_or(false),
            hardware_breakpoints,
        };
        self.with(OP, |v| v.set_guest_debug(&d).js())
    }

    /// The 4096-byte legacy XSAVE area.
    #[napi]
    pub fn get_xsave(&self) -> Result<Uint8Array> {
        self.with("getXsave", |v| {
            let x = v.get_xsave().js()?;
            Ok(Uint8Array::new(x.region.iter().flat_map(|w| w.to_le_bytes()).collect()))
        })
    }

    #[napi]
    pub fn set_xsave(&self, data: &[u8]) -> Result<()> {
        let bytes: [u8; 4096] = copy_exact("setXsave", "xsave", data)?;
        let mut x = kvm_xsave::default();
        for (dst, src) in x.region.iter_mut().zip(bytes.chunks_exact(4)) {
            *dst = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        }
        self.with("setXsave", |v| v.set_xsave(&x).js())
    }

    #[napi]
    pub fn get_xcrs(&self) -> Result<Vec<Xcr>> {
        self.with("getXcrs", |v| {
            let x = v.get_xcrs().js()?;
            let n = (x.nr_xcrs as usize).min(x.xcrs.len());
            Ok(x.xcrs[..n]
                .iter()
                .map(|e| Xcr {
                    xcr: e.xcr,
                    value: big(e.value),
                })
                .collect())
        })
    }

    #[napi]
    pub fn set_xcrs(&self, xcrs: Vec<Xcr>) -> Result<()> {
        const OP: &str = "setXcrs";
        let mut k = kvm_xcrs::default();
        if xcrs.len() > k.xcrs.len() {
            return Err(invalid(OP, format!("at most {} XCRs", k.xcrs.len())));
        }
        k.nr_xcrs = xcrs.len() as u32;
        for (dst, src) in k.xcrs.iter_mut().zip(&xcrs) {
            dst.xcr = src.xcr;
            dst.value = u64_of(OP, "value", &src.value)?;
        }
        self.with(OP, |v| v.set_xcrs(&k).js())
    }
}
