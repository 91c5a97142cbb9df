//! Debugging an x86 guest: guest-debug settings, and the few instructions an emulating
//! KVM cannot carry out.

use kvm_bindings::*;

use crate::error::{Context, Result};
use crate::kvm::memory::PAGE_SIZE;
use crate::kvm::vcpu::KvmVcpu;

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

impl KvmVcpu {
    /// `KVM_SET_GUEST_DEBUG`: single-step and breakpoints, reported as `Debug` exits.
    /// While a debugger is attached it owns guest debug: the settings are kept and take
    /// effect when it detaches.
    pub fn set_guest_debug(&self, debug: &GuestDebug) -> Result<()> {
        let fd = self.fd("setGuestDebug")?;
        let raw = debug.to_kvm();
        if self.keep_own_guest_debug(raw) {
            fd.set_guest_debug(&raw).op("setGuestDebug")?;
        }
        Ok(())
    }

    /// After an emulation failure (`InternalError`, suberror 1), carries out the few
    /// instructions KVM's emulator lacks, when one is at RIP: `int3` (the #BP it raises
    /// is delivered, RIP past it) and `fwait` (a no-op without pending x87 exceptions,
    /// which the guest kernel never leaves). Returns whether it did, or whether the
    /// instruction should simply run again: when the bytes at RIP are no longer those KVM
    /// says its emulator failed on, another vcpu rewrote the code meanwhile (Linux
    /// patches its running text through a temporary `int3`, and a vcpu can fetch that
    /// `int3` and fail on it after the patch is done); the failed instruction had no
    /// effect, so running what is there now is what the CPU would have done. Nested KVMs
    /// that emulate all guest kernel code (see docs/linux.md) need this for a booting
    /// Linux kernel; hardware KVM runs these instructions itself and never gets here.
    pub fn finish_unemulated_instruction(&self) -> Result<bool> {
        let failed = self.failed_instruction();
        let mut regs = self.get_regs()?;
        let Some(gpa) = self.translate_gva(regs.rip)? else {
            return Ok(false);
        };
        // Compared within RIP's page only: the next guest-physical page need not be the
        // one that follows it virtually.
        let in_page = (PAGE_SIZE - (gpa & (PAGE_SIZE - 1))) as usize;
        let len = failed.as_ref().map_or(1, |f| f.len()).clamp(1, in_page);
        let mut code = [0u8; 15];
        if self.vm.read(gpa, &mut code[..len]).is_err() {
            return Ok(false);
        }
        if failed
            .as_ref()
            .is_some_and(|f| f.len() >= len && f[..len] != code[..len])
        {
            return Ok(true);
        }
        match code[0] {
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

    /// The bytes of the instruction KVM's emulator failed on, as the last exit reports
    /// them (Linux 5.14 and later); `None` if it does not.
    fn failed_instruction(&self) -> Option<Vec<u8>> {
        let run = self.kvm_run();
        if run.exit_reason != KVM_EXIT_INTERNAL_ERROR {
            return None;
        }
        // SAFETY: the exit is an internal error, so `emulation_failure` is the member
        // KVM filled (its suberror says so below); the struct is plain integers and bytes,
        // valid for any bit pattern, read between runs (see `kvm_run`).
        let failure = unsafe { run.__bindgen_anon_1.emulation_failure };
        if failure.suberror != KVM_INTERNAL_ERROR_EMULATION
            || failure.ndata < 3
            || failure.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) == 0
        {
            return None;
        }
        // SAFETY: as above; the flag says the instruction-bytes member is the one filled.
        let insn = unsafe { failure.__bindgen_anon_1.__bindgen_anon_1 };
        Some(insn.insn_bytes[..usize::from(insn.insn_size).min(insn.insn_bytes.len())].to_vec())
    }
}
