//! Loads a sandbox guest: its ELF (linux-loader's loader, confined to the guest's part
//! of RAM) and the sandbox machine of `arch::x86_64::sandbox`, with a vcpu at the ELF's
//! entry in ring 3 and its stack at the top of RAM.

use std::io::Cursor;

use kvm_bindings::kvm_regs;
use linux_loader::loader::{Elf, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::arch::x86_64::sandbox::*;
use crate::error::{Error, Result};
use crate::kvm::{KvmVcpu, KvmVm};

const OP: &str = "loadSandboxGuest";

/// Where a loaded guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxGuest {
    /// The ELF's entry point.
    pub entry: u64,
    /// The first byte past its segments.
    pub end: u64,
    /// The initial stack pointer: the top of RAM.
    pub stack_top: u64,
}

/// The VM's one RAM region at 0, as vm-memory sees `[LOAD_MIN, size)` of it: the ELF
/// loader cannot write the machine's own structures or the mailbox.
fn guest_part(vm: &KvmVm) -> Result<(GuestMemoryMmap, u64)> {
    let regions = vm.regions();
    let [(_, ram)] = regions.as_slice() else {
        return Err(Error::invalid(OP, "a sandbox VM has one RAM region, at 0"));
    };
    let size = ram.len() as u64;
    if ram.guest_address() != 0
        || ram.readonly()
        || !(MIN_MEMORY..=MAX_MEMORY).contains(&size)
        || !size.is_multiple_of(2 << 20)
    {
        return Err(Error::invalid(
            OP,
            format!(
                "a sandbox's RAM is one writable region at 0 of 4 MiB to 1 GiB in steps of 2 MiB, not {size:#x} bytes at {:#x}",
                ram.guest_address()
            ),
        ));
    }
    // SAFETY: the region's mapping is live, shared and read-write and covers
    // `[LOAD_MIN, size)` at this offset; `regions` keeps it mapped while we load.
    let mmap = unsafe {
        MmapRegion::build_raw(
            ram.host_ptr().add(LOAD_MIN as usize),
            (size - LOAD_MIN) as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
        )
    }
    .map_err(|e| Error::invalid(OP, format!("guest memory: {e}")))?;
    let region = GuestRegionMmap::new(mmap, GuestAddress(LOAD_MIN))
        .ok_or_else(|| Error::invalid(OP, "guest memory region overflows"))?;
    let mem =
        GuestMemoryMmap::from_regions(vec![region]).map_err(|e| Error::invalid(OP, format!("guest memory: {e}")))?;
    Ok((mem, size))
}

/// Loads `elf` (an x86-64 ELF executable linked at or above [`LOAD_MIN`]) into a new
/// VM's RAM with the sandbox machine, and points `vcpu` at its entry in ring 3.
/// `EINVAL` for a file that is not such an ELF, or whose segments leave the guest's part
/// of RAM (below `LOAD_MIN` or past the end), or a VM without the hypercall port.
pub fn load_sandbox_guest(vm: &KvmVm, vcpu: &KvmVcpu, elf: &[u8]) -> Result<SandboxGuest> {
    let port = vm.config().hypercall_port.ok_or_else(|| {
        Error::invalid(
            OP,
            "a sandbox needs the hypercall port (hypercallPort: null turns it off)",
        )
    })?;
    if !elf.starts_with(b"\x7fELF") {
        return Err(Error::invalid(OP, "the sandbox guest is not an ELF file"));
    }
    let (mem, size) = guest_part(vm)?;
    let loaded = Elf::load(&mem, None, &mut Cursor::new(elf), Some(GuestAddress(LOAD_MIN)))
        .map_err(|e| Error::invalid(OP, format!("the sandbox guest is not a loadable x86-64 ELF executable above {LOAD_MIN:#x} that fits in {size:#x} bytes of RAM ({e:?})")))?;
    let (entry, end) = (loaded.kernel_load.0, loaded.kernel_end);
    if end > size || entry >= end {
        return Err(Error::invalid(
            OP,
            format!(
                "the sandbox guest's segments end at {end:#x}, past its RAM ({size:#x}), or miss its entry {entry:#x}"
            ),
        ));
    }
    vm.write(GDT_ADDR, &gdt_bytes())?;
    vm.write(TSS_ADDR, &tss_bytes(port))?;
    let (idt, stubs) = idt_and_stubs(port);
    vm.write(IDT_ADDR, &idt)?;
    vm.write(STUBS_ADDR, &stubs)?;
    for (addr, bytes) in page_tables(size) {
        vm.write(addr, &bytes)?;
    }
    let mut sregs = vcpu.get_sregs()?;
    set_user_mode(&mut sregs);
    vcpu.set_sregs(&sregs)?;
    vcpu.set_regs(&kvm_regs {
        rip: entry,
        rsp: size,
        rflags: 2,
        ..Default::default()
    })?;
    Ok(SandboxGuest {
        entry,
        end,
        stack_top: size,
    })
}
