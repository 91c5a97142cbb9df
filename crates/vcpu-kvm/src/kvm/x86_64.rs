//! x86-64 specifics of the KVM backend: VM setup, register state, the port-I/O
//! hypercall ABI, debug and long mode.

use std::sync::OnceLock;

use kvm_bindings::*;
use kvm_ioctls::VmFd;

use super::vcpu::KvmVcpu;
use super::Kvm;
use crate::arch::x86_64::{layout, long_mode};
use crate::error::{Context, Error, ErrorCode, Result};
use crate::{HypercallAbi, Vcpu};

/// The sync-register sets we ask KVM to copy into `kvm_run` on every exit.
pub(crate) const SYNC_REGS_WANTED: i32 = KVM_SYNC_X86_REGS as i32;

/// Port-I/O hypercall ABI: registers holding arguments 0..6.
pub const HYPERCALL_ARG_REGS: [&str; 6] = ["rbx", "rcx", "rsi", "rdi", "r8", "r9"];
/// Port-I/O hypercall ABI: registers receiving results 0..4.
pub const HYPERCALL_RESULT_REGS: [&str; 4] = ["rax", "rbx", "rcx", "rdx"];

/// Places KVM's TSS and identity map, and creates the irqchip and PIT if asked.
pub(crate) fn init_vm(fd: &VmFd, irqchip: bool) -> Result<()> {
    fd.set_tss_address(layout::KVM_TSS_ADDR as usize).op("createVm")?;
    fd.set_identity_map_address(layout::KVM_IDENTITY_MAP_ADDR)
        .op("createVm")?;
    if irqchip {
        fd.create_irq_chip().op("createVm")?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).op("createVm")?;
    }
    Ok(())
}

/// The host's supported CPUID, asked once per process (it does not change).
pub(crate) fn supported_cpuid(kvm: &Kvm) -> Result<&'static CpuId> {
    static CPUID: OnceLock<CpuId> = OnceLock::new();
    if let Some(c) = CPUID.get() {
        return Ok(c);
    }
    let c = kvm.fd().get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).op("createVm")?;
    Ok(CPUID.get_or_init(|| c))
}

/// Gives a new vcpu the host's CPUID (KVM checks long-mode EFER bits against it) and
/// turns on sync registers, so hypercalls need no extra ioctl.
pub(crate) fn init_vcpu(vcpu: &KvmVcpu) -> Result<()> {
    if let Some(cpuid) = vcpu.vm.cpuid() {
        let mut cpuid = cpuid.clone();
        let apic_id = vcpu.id() as u32;
        for entry in cpuid.as_mut_slice() {
            match entry.function {
                // The initial APIC id: each vcpu its own, as a kernel counting CPUs expects.
                1 => entry.ebx = (entry.ebx & 0x00ff_ffff) | (apic_id << 24),
                0xb | 0x1f => entry.edx = apic_id,
                _ => {}
            }
        }
        vcpu.fd.set_cpuid2(&cpuid).op("createVcpu")?;
    }
    if vcpu.vm.shared().sync_regs {
        vcpu.kvm_run().kvm_valid_regs = KVM_SYNC_X86_REGS as u64;
    }
    Ok(())
}

fn regs_pending_in_run(vcpu: &KvmVcpu) -> bool {
    vcpu.kvm_run().kvm_dirty_regs & KVM_SYNC_X86_REGS as u64 != 0
}

#[allow(clippy::mut_from_ref)] // part of kvm_run: see `KvmVcpu::kvm_run`
fn sync_regs(vcpu: &KvmVcpu) -> &mut kvm_regs {
    // SAFETY: `s.regs` is the sync-register area of our live kvm_run, plain old data.
    unsafe { &mut vcpu.kvm_run().s.regs.regs }
}

/// The call of a port-I/O hypercall: id written to the port; arguments in
/// [`HYPERCALL_ARG_REGS`]; results for [`HYPERCALL_RESULT_REGS`], where unset results
/// leave their register unchanged, except RAX, which defaults to `u64::MAX` (not
/// supported).
pub(crate) fn port_hypercall_abi(vcpu: &KvmVcpu, id: u64) -> Result<HypercallAbi> {
    let regs = if vcpu.vm.shared().sync_regs {
        *sync_regs(vcpu)
    } else {
        vcpu.get_regs()?
    };
    let args = [regs.rbx, regs.rcx, regs.rsi, regs.rdi, regs.r8, regs.r9].map(|r| r as usize);
    let defaults = [u64::MAX, regs.rbx, regs.rcx, regs.rdx].map(|r| r as usize);
    Ok(HypercallAbi::new(id as usize, &args, &defaults))
}

/// Writes a port-I/O hypercall's results into [`HYPERCALL_RESULT_REGS`]: through the
/// sync registers where KVM has them (no ioctl), else with `KVM_SET_REGS`.
pub(crate) fn port_hypercall_results(vcpu: &KvmVcpu, abi: &HypercallAbi) -> Result<()> {
    let sync = vcpu.vm.shared().sync_regs;
    let mut regs = if sync { *sync_regs(vcpu) } else { vcpu.get_regs()? };
    let results = abi.get_results();
    for (reg, value) in [&mut regs.rax, &mut regs.rbx, &mut regs.rcx, &mut regs.rdx]
        .into_iter()
        .zip(results)
    {
        *reg = *value as u64;
    }
    if sync {
        *sync_regs(vcpu) = regs;
        vcpu.kvm_run().kvm_dirty_regs |= KVM_SYNC_X86_REGS as u64;
        Ok(())
    } else {
        vcpu.set_regs(&regs)
    }
}

/// The LAPIC ioctls fail with `EINVAL`/`ENXIO` when the VM has no in-kernel irqchip.
fn lapic_error(op: &'static str, errno: i32) -> Error {
    if errno == libc::EINVAL || errno == libc::ENXIO {
        return Error::new(
            ErrorCode::Errno(errno),
            op,
            format!("{op}: this VM has no in-kernel local APIC (create it with the irqchip option)"),
        );
    }
    Error::errno(op, errno)
}

/// How `set_guest_debug` should trap the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Turn debugging on (off clears everything below).
    pub enable: bool,
    /// Exit with `Debug` after every instruction.
    pub single_step: bool,
    /// Exit with `Debug` on `int3` instead of delivering #BP to the guest.
    pub software_breakpoints: bool,
    /// Up to four execution breakpoints (hardware debug registers).
    pub hardware_breakpoints: [Option<u64>; 4],
}

impl GuestDebug {
    /// The `kvm_guest_debug` structure for these settings.
    pub fn to_kvm(&self) -> kvm_guest_debug {
        let mut dbg = kvm_guest_debug::default();
        if !self.enable {
            return dbg;
        }
        dbg.control = KVM_GUESTDBG_ENABLE;
        if self.single_step {
            dbg.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if self.software_breakpoints {
            dbg.control |= KVM_GUESTDBG_USE_SW_BP;
        }
        for (i, bp) in self.hardware_breakpoints.iter().enumerate() {
            if let Some(addr) = bp {
                dbg.control |= KVM_GUESTDBG_USE_HW_BP;
                dbg.arch.debugreg[i] = *addr;
                // Local enable bit; condition 00 (execute), length 00.
                dbg.arch.debugreg[7] |= 1 << (i * 2);
            }
        }
        dbg
    }
}

/// x86 register and device state, beyond the trait (what every VMM needs).
impl KvmVcpu {
    /// `KVM_GET_REGS` (or the sync copy a hypercall result is still waiting in).
    pub fn get_regs(&self) -> Result<kvm_regs> {
        let fd = self.fd("getRegs")?;
        if regs_pending_in_run(self) {
            return Ok(*sync_regs(self));
        }
        fd.get_regs().op("getRegs")
    }

    /// `KVM_SET_REGS` (supersedes a hypercall result not yet delivered).
    pub fn set_regs(&self, regs: &kvm_regs) -> Result<()> {
        let fd = self.fd("setRegs")?;
        fd.set_regs(regs).op("setRegs")?;
        self.kvm_run().kvm_dirty_regs &= !(KVM_SYNC_X86_REGS as u64);
        Ok(())
    }

    /// `KVM_GET_SREGS`.
    pub fn get_sregs(&self) -> Result<kvm_sregs> {
        self.fd("getSregs")?.get_sregs().op("getSregs")
    }

    /// `KVM_SET_SREGS`.
    pub fn set_sregs(&self, sregs: &kvm_sregs) -> Result<()> {
        self.fd("setSregs")?.set_sregs(sregs).op("setSregs")
    }

    /// `KVM_GET_FPU`.
    pub fn get_fpu(&self) -> Result<kvm_fpu> {
        self.fd("getFpu")?.get_fpu().op("getFpu")
    }

    /// `KVM_SET_FPU`.
    pub fn set_fpu(&self, fpu: &kvm_fpu) -> Result<()> {
        self.fd("setFpu")?.set_fpu(fpu).op("setFpu")
    }

    /// `KVM_GET_MSRS` for `indices`: `(index, value)` pairs, in order. Fails with
    /// `EINVAL` naming the first MSR KVM does not have.
    pub fn get_msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>> {
        const OP: &str = "getMsrs";
        let fd = self.fd(OP)?;
        let entries: Vec<kvm_msr_entry> = indices
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| Error::invalid(OP, "too many MSRs in one call"))?;
        let n = fd.get_msrs(&mut msrs).op(OP)?;
        if n < indices.len() {
            return Err(Error::invalid(OP, format!("MSR {:#x} is not supported", indices[n])));
        }
        Ok(msrs.as_slice().iter().map(|e| (e.index, e.data)).collect())
    }

    /// `KVM_SET_MSRS`. Fails with `EINVAL` naming the first MSR KVM refused.
    pub fn set_msrs(&self, values: &[(u32, u64)]) -> Result<()> {
        const OP: &str = "setMsrs";
        let fd = self.fd(OP)?;
        let entries: Vec<kvm_msr_entry> = values
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| Error::invalid(OP, "too many MSRs in one call"))?;
        let n = fd.set_msrs(&msrs).op(OP)?;
        if n < values.len() {
            return Err(Error::invalid(OP, format!("MSR {:#x} could not be set", values[n].0)));
        }
        Ok(())
    }

    /// `KVM_SET_CPUID2`.
    pub fn set_cpuid(&self, entries: &[kvm_cpuid_entry2]) -> Result<()> {
        const OP: &str = "setCpuid";
        let fd = self.fd(OP)?;
        let cpuid = CpuId::from_entries(entries)
            .map_err(|_| Error::invalid(OP, format!("at most {KVM_MAX_CPUID_ENTRIES} CPUID entries")))?;
        fd.set_cpuid2(&cpuid).op(OP)
    }

    /// `KVM_GET_LAPIC` (needs the in-kernel irqchip).
    pub fn get_lapic(&self) -> Result<kvm_lapic_state> {
        self.fd("getLapic")?
            .get_lapic()
            .map_err(|e| lapic_error("getLapic", e.errno()))
    }

    /// `KVM_SET_LAPIC` (needs the in-kernel irqchip).
    pub fn set_lapic(&self, lapic: &kvm_lapic_state) -> Result<()> {
        self.fd("setLapic")?
            .set_lapic(lapic)
            .map_err(|e| lapic_error("setLapic", e.errno()))
    }

    /// `KVM_GET_VCPU_EVENTS`.
    pub fn get_vcpu_events(&self) -> Result<kvm_vcpu_events> {
        self.fd("getVcpuEvents")?.get_vcpu_events().op("getVcpuEvents")
    }

    /// `KVM_SET_VCPU_EVENTS`.
    pub fn set_vcpu_events(&self, events: &kvm_vcpu_events) -> Result<()> {
        self.fd("setVcpuEvents")?.set_vcpu_events(events).op("setVcpuEvents")
    }

    /// `KVM_GET_MP_STATE`: `KVM_MP_STATE_*`.
    pub fn get_mp_state(&self) -> Result<u32> {
        Ok(self.fd("getMpState")?.get_mp_state().op("getMpState")?.mp_state)
    }

    /// `KVM_SET_MP_STATE`.
    pub fn set_mp_state(&self, mp_state: u32) -> Result<()> {
        self.fd("setMpState")?
            .set_mp_state(kvm_mp_state { mp_state })
            .op("setMpState")
    }

    /// `KVM_GET_DEBUGREGS`.
    pub fn get_debug_regs(&self) -> Result<kvm_debugregs> {
        self.fd("getDebugRegs")?.get_debug_regs().op("getDebugRegs")
    }

    /// `KVM_SET_DEBUGREGS`.
    pub fn set_debug_regs(&self, regs: &kvm_debugregs) -> Result<()> {
        self.fd("setDebugRegs")?.set_debug_regs(regs).op("setDebugRegs")
    }

    /// `KVM_SET_GUEST_DEBUG`: single-step and breakpoints, reported as `Debug` exits.
    pub fn set_guest_debug(&self, debug: &GuestDebug) -> Result<()> {
        self.fd("setGuestDebug")?
            .set_guest_debug(&debug.to_kvm())
            .op("setGuestDebug")
    }

    /// `KVM_GET_XSAVE`.
    pub fn get_xsave(&self) -> Result<kvm_xsave> {
        self.fd("getXsave")?.get_xsave().op("getXsave")
    }

    /// `KVM_SET_XSAVE`.
    pub fn set_xsave(&self, xsave: &kvm_xsave) -> Result<()> {
        let fd = self.fd("setXsave")?;
        // SAFETY: a full `kvm_xsave` (4 KiB region); KVM reads only that much of it since
        // we never enabled KVM_CAP_XSAVE2's larger buffers.
        unsafe { fd.set_xsave(xsave) }.op("setXsave")
    }

    /// `KVM_GET_XCRS`.
    pub fn get_xcrs(&self) -> Result<kvm_xcrs> {
        self.fd("getXcrs")?.get_xcrs().op("getXcrs")
    }

    /// `KVM_SET_XCRS`.
    pub fn set_xcrs(&self, xcrs: &kvm_xcrs) -> Result<()> {
        self.fd("setXcrs")?.set_xcrs(xcrs).op("setXcrs")
    }

    /// `KVM_TRANSLATE`: the guest physical address of guest virtual `gva` in the current
    /// page tables, or `None` where nothing is mapped.
    pub fn translate_gva(&self, gva: u64) -> Result<Option<u64>> {
        let t = self.fd("translateGva")?.translate_gva(gva).op("translateGva")?;
        Ok((t.valid != 0).then_some(t.physical_address))
    }

    /// After an emulation failure (`InternalError`, suberror 1), carries out the few
    /// instructions KVM's emulator lacks, when one is at RIP: `int3` (the #BP it raises
    /// is delivered, RIP past it) and `fwait` (a no-op without pending x87 exceptions,
    /// which the guest kernel never leaves). Returns whether it did. Nested KVMs that
    /// emulate all guest kernel code (see the README) need this for a booting Linux
    /// kernel; hardware KVM runs these instructions itself and never gets here.
    pub fn finish_unemulated_instruction(&self) -> Result<bool> {
        let mut regs = self.get_regs()?;
        let Some(gpa) = self.translate_gva(regs.rip)? else {
            return Ok(false);
        };
        let mut byte = [0u8];
        if self.vm.read(gpa, &mut byte).is_err() {
            return Ok(false);
        }
        match byte[0] {
            0xcc => {
                let mut events = self.get_vcpu_events()?;
                events.exception.injected = 1;
                events.exception.nr = 3;
                events.exception.has_error_code = 0;
                events.exception.error_code = 0;
                regs.rip += 1;
                self.set_regs(&regs)?;
                self.set_vcpu_events(&events)?;
            }
            0x9b => {
                regs.rip += 1;
                self.set_regs(&regs)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Puts this vcpu in 64-bit long mode: writes the GDT and identity-mapped page tables
    /// (first 4 GiB) at the addresses in [`crate::arch::x86_64::layout`], which guest
    /// RAM must cover, and sets the segment and control registers. The general registers
    /// are left alone: set RIP, RSP and RFLAGS (2) afterwards, or use
    /// [`Self::setup_long_mode_at`].
    pub fn setup_long_mode(&self) -> Result<()> {
        const OP: &str = "setupLongMode";
        let _ = self.fd(OP)?;
        let vm = self.vm();
        let needs = |e: Error| {
            Error::new(
                ErrorCode::Errno(libc::EFAULT),
                OP,
                format!(
                    "long mode needs guest RAM at [0, {:#x}) for its GDT and page tables ({})",
                    layout::LOW_END,
                    e.message()
                ),
            )
        };
        vm.write(layout::GDT_ADDR, &long_mode::gdt_bytes()).map_err(needs)?;
        vm.write(layout::IDT_ADDR, &[0u8; 8]).map_err(needs)?;
        for (addr, bytes) in long_mode::page_tables() {
            vm.write(addr, &bytes).map_err(needs)?;
        }
        let mut sregs = self.get_sregs()?;
        long_mode::set_long_mode(&mut sregs);
        self.set_sregs(&sregs)
    }

    /// [`Self::setup_long_mode`], then the general registers all 0 but RIP = `rip`,
    /// RSP = `rsp` and RFLAGS = 2: a fresh vcpu ready to run, in two fewer ioctls than
    /// setting the registers afterwards.
    pub fn setup_long_mode_at(&self, rip: u64, rsp: u64) -> Result<()> {
        self.setup_long_mode()?;
        self.set_regs(&kvm_regs {
            rip,
            rsp,
            rflags: 2,
            ..Default::default()
        })
    }
}
