//! Starting a fresh vcpu in 64-bit long mode, with the GDT and page tables placed by
//! `arch::x86_64::layout`.

use kvm_bindings::*;

use crate::arch::x86_64::{layout, long_mode};
use crate::error::{Error, ErrorCode, Result};
use crate::kvm::vcpu::KvmVcpu;

impl KvmVcpu {
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
