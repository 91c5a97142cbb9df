//! x86 register and device state: conversions between kvm-bindings structs and JS
//! objects (field names follow kvm-bindings, camelCase), and the `NativeVcpu` methods.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::kvm::GuestDebug as KvmGuestDebug;
use vcpu_kvm::kvm_bindings::*;

use super::events::*;
use super::CpuidEntry;
use crate::args::{big, small, u64_of};
use crate::error::{invalid, IntoNapi, Result};
use crate::vcpu::NativeVcpu;

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
    /// The breakpoint address registers DR0–DR3.
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
