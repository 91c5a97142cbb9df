//! `KvmVm`: a VM file descriptor, its memory slots and its vcpus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::{Cap, VmFd};

use super::memory::{GuestRegion, PAGE_SIZE};
use super::run::RunShared;
use super::vcpu::KvmVcpu;
use super::Kvm;
use crate::error::{Context, Error, ErrorCode, Result};
use crate::MemSlot;

/// Guest physical addresses are at most 52 bits wide on x86-64 and arm64.
pub const MAX_GUEST_ADDRESS_BITS: u32 = 52;

/// How long [`KvmVm::close`] waits for its vcpus to leave the guest.
pub const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The I/O port of the hypercall ABI unless `VmConfig::hypercall_port` says otherwise.
pub const DEFAULT_HYPERCALL_PORT: u16 = 0x0500;

/// How to create a VM.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig {
    /// Create the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT. Without it, `hlt`
    /// exits to userspace as `Hlt`.
    pub irqchip: bool,
    /// The port of the port-I/O hypercall ABI; `None` turns it off (every port is `Io`).
    pub hypercall_port: Option<u16>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            irqchip: false,
            hypercall_port: Some(DEFAULT_HYPERCALL_PORT),
        }
    }
}

struct Slot {
    slot: MemSlot,
    region: Arc<GuestRegion>,
    dirty_log: bool,
}

struct VmState {
    fd: Option<VmFd>,
    slots: Vec<Slot>,
    vcpus: Vec<Weak<RunShared>>,
}

impl VmState {
    /// Where `slot` is in `slots`; ENOENT if no region has it.
    fn slot_index(&self, op: &'static str, slot: MemSlot) -> Result<usize> {
        self.slots.iter().position(|s| s.slot == slot).ok_or_else(|| {
            Error::new(
                ErrorCode::Errno(libc::ENOENT),
                op,
                format!("no memory region in slot {slot}"),
            )
        })
    }
}

pub(crate) struct VmShared {
    state: Mutex<VmState>,
    closed: AtomicBool,
    pub(crate) config: VmConfig,
    pub(crate) run_size: usize,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) sync_regs: bool,
    max_slots: usize,
    max_vcpu_id: usize,
    /// What the architecture keeps per VM (x86: the CPUID vcpus start with).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) arch: super::arch::VmArch,
}

/// A KVM virtual machine. Cloning gives another handle to the same VM (any thread).
#[derive(Clone)]
pub struct KvmVm {
    shared: Arc<VmShared>,
}

/// A reference to a VM that does not keep it alive (for registries of handles).
#[derive(Clone)]
pub struct WeakVm(Weak<VmShared>);

impl WeakVm {
    /// The VM, if it still exists and is not closed.
    pub fn upgrade(&self) -> Option<KvmVm> {
        self.0
            .upgrade()
            .map(|shared| KvmVm { shared })
            .filter(|vm| !vm.is_closed())
    }
}

impl KvmVm {
    pub(crate) fn new(kvm: &Kvm, config: VmConfig) -> Result<Self> {
        let sys = kvm.fd();
        let fd = sys.create_vm().op("createVm")?;
        let arch = super::arch::init_vm(kvm, &fd, config.irqchip)?;
        let run_size = sys.get_vcpu_mmap_size().op("createVm")?;
        let max_slots = fd.check_extension_int(Cap::NrMemslots).max(1) as usize;
        let max_vcpu_id = match fd.check_extension_int(Cap::MaxVcpuId) {
            n if n > 0 => n as usize,
            _ => fd.check_extension_int(Cap::MaxVcpus).max(1) as usize,
        };
        let wanted = super::arch::SYNC_REGS_WANTED;
        let sync_regs = wanted != 0 && fd.check_extension_int(Cap::SyncRegs) & wanted == wanted;
        Ok(KvmVm {
            shared: Arc::new(VmShared {
                arch,
                state: Mutex::new(VmState {
                    fd: Some(fd),
                    slots: Vec::new(),
                    vcpus: Vec::new(),
                }),
                closed: AtomicBool::new(false),
                config,
                run_size,
                sync_regs,
                max_slots,
                max_vcpu_id,
            }),
        })
    }

    fn lock(&self, op: &'static str) -> Result<MutexGuard<'_, VmState>> {
        // Every update of VmState is a single push/remove: a panic elsewhere cannot
        // leave it half-written, so a poisoned lock is still consistent.
        let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.fd.is_none() {
            return Err(Error::closed(op, "VM"));
        }
        Ok(state)
    }

    /// A reference that does not keep the VM alive.
    pub fn downgrade(&self) -> WeakVm {
        WeakVm(Arc::downgrade(&self.shared))
    }

    /// Whether two handles name the same VM.
    pub fn same_vm(&self, other: &KvmVm) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The slot of each region with whether it logs dirty pages.
    pub fn slots(&self) -> Vec<(MemSlot, Arc<GuestRegion>, bool)> {
        match self.lock("memory") {
            Ok(state) => state
                .slots
                .iter()
                .map(|s| (s.slot, s.region.clone(), s.dirty_log))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The configuration the VM was created with.
    pub fn config(&self) -> VmConfig {
        self.shared.config
    }

    /// True once [`KvmVm::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Maps `size` bytes of fresh zeroed RAM at guest physical `guest_address`.
    /// Both must be page aligned, the range must not overlap another slot and must end
    /// below 2^52. `readonly`: guest writes become `Mmio` exits and leave memory as it
    /// is. `dirty_log`: pages the guest writes are recorded for [`KvmVm::get_dirty_log`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, VmConfig};
    /// let vm = Kvm::open(None)?.create_vm(VmConfig::default())?;
    /// let (_slot, ram) = vm.add_memory(0, 2 << 20, false, false)?;
    /// assert_eq!(ram.len(), 2 << 20);
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn add_memory(
        &self,
        guest_address: u64,
        size: usize,
        readonly: bool,
        dirty_log: bool,
    ) -> Result<(MemSlot, Arc<GuestRegion>)> {
        const OP: &str = "addMemory";
        if size == 0 || !(size as u64).is_multiple_of(PAGE_SIZE) {
            return Err(Error::invalid(
                OP,
                format!("size {size:#x} must be a non-zero multiple of {PAGE_SIZE:#x} (the page size)"),
            ));
        }
        if !guest_address.is_multiple_of(PAGE_SIZE) {
            return Err(Error::invalid(
                OP,
                format!("guestAddress {guest_address:#x} must be a multiple of {PAGE_SIZE:#x} (the page size)"),
            ));
        }
        let end = guest_address.checked_add(size as u64);
        if end.is_none_or(|end| end > 1u64 << MAX_GUEST_ADDRESS_BITS) {
            return Err(Error::invalid(OP, format!("[{guest_address:#x}, +{size:#x}) goes past the {MAX_GUEST_ADDRESS_BITS}-bit guest physical address space")));
        }
        let mut state = self.lock(OP)?;
        if let Some(other) = state.slots.iter().find(|s| {
            let r = &s.region;
            guest_address < r.guest_address() + r.len() as u64 && r.guest_address() < guest_address + size as u64
        }) {
            let r = &other.region;
            return Err(Error::new(
                ErrorCode::Errno(libc::EEXIST),
                OP,
                format!(
                    "[{guest_address:#x}, +{size:#x}) overlaps the region at [{:#x}, +{:#x})",
                    r.guest_address(),
                    r.len()
                ),
            ));
        }
        let slot = (0..self.shared.max_slots as MemSlot)
            .find(|n| state.slots.iter().all(|s| s.slot != *n))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Errno(libc::ENOSPC),
                    OP,
                    format!("all {} memory slots are in use", self.shared.max_slots),
                )
            })?;
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        if readonly && !fd.check_extension(Cap::ReadonlyMem) {
            return Err(Error::new(
                ErrorCode::Errno(libc::ENOTSUP),
                OP,
                "this KVM has no read-only memory (KVM_CAP_READONLY_MEM)",
            ));
        }
        let region = Arc::new(GuestRegion::new(guest_address, size, readonly)?);
        let mut flags = 0;
        if readonly {
            flags |= KVM_MEM_READONLY;
        }
        if dirty_log {
            flags |= KVM_MEM_LOG_DIRTY_PAGES;
        }
        let mem = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: guest_address,
            memory_size: size as u64,
            userspace_addr: region.host_ptr() as u64,
        };
        // SAFETY: the host range is our own live mapping of exactly `size` bytes, and the
        // slot holds an Arc to it, so it stays mapped until the slot is removed from KVM.
        unsafe { fd.set_user_memory_region(mem) }.op(OP)?;
        state.slots.push(Slot {
            slot,
            region: region.clone(),
            dirty_log,
        });
        Ok((slot, region))
    }

    /// Removes a slot from the guest: accesses there become `Mmio` exits. The host
    /// mapping is freed once no view of it remains.
    pub fn remove_memory(&self, slot: MemSlot) -> Result<()> {
        const OP: &str = "removeMemory";
        let mut state = self.lock(OP)?;
        let index = state.slot_index(OP, slot)?;
        let region = &state.slots[index].region;
        let mem = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.guest_address(),
            memory_size: 0,
            userspace_addr: region.host_ptr() as u64,
        };
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        // SAFETY: size 0 deletes the slot; KVM stops using the host range before return.
        unsafe { fd.set_user_memory_region(mem) }.op(OP)?;
        state.slots.remove(index);
        Ok(())
    }

    /// The memory regions, by slot.
    pub fn regions(&self) -> Vec<(MemSlot, Arc<GuestRegion>)> {
        match self.lock("regions") {
            Ok(state) => state.slots.iter().map(|s| (s.slot, s.region.clone())).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn region_at(&self, op: &'static str, gpa: u64, len: usize) -> Result<(Arc<GuestRegion>, usize)> {
        let state = self.lock(op)?;
        state
            .slots
            .iter()
            .find_map(|s| s.region.offset_of(gpa, len).map(|o| (s.region.clone(), o)))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Errno(libc::EFAULT),
                    op,
                    format!("[{gpa:#x}, +{len:#x}) is not inside one memory region"),
                )
            })
    }

    /// Copies guest memory at `gpa` into `buf`; the range must lie inside one region.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let (region, offset) = self.region_at("read", gpa, buf.len())?;
        region.read_at(offset, buf);
        Ok(())
    }

    /// A copy of `len` bytes of guest memory at `gpa` (checked before allocating).
    pub fn read_vec(&self, gpa: u64, len: usize) -> Result<Vec<u8>> {
        let (region, offset) = self.region_at("read", gpa, len)?;
        let mut buf = vec![0; len];
        region.read_at(offset, &mut buf);
        Ok(buf)
    }

    /// Copies `data` into guest memory at `gpa`; the range must lie inside one region.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, VmConfig};
    /// # let vm = Kvm::open(None)?.create_vm(VmConfig::default())?;
    /// vm.add_memory(0, 2 << 20, false, false)?;
    /// vm.write(0x1000, &[0xf4])?; // hlt
    /// let mut byte = [0u8];
    /// vm.read(0x1000, &mut byte)?;
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<()> {
        let (region, offset) = self.region_at("write", gpa, data.len())?;
        region.write_at(offset, data);
        Ok(())
    }

    /// Routes `evt` to interrupt line `gsi` of the in-kernel irqchip (`KVM_IRQFD`).
    pub fn register_irqfd(&self, evt: &vmm_sys_util::eventfd::EventFd, gsi: u32) -> Result<()> {
        const OP: &str = "registerIrqfd";
        let state = self.lock(OP)?;
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        fd.register_irqfd(evt, gsi).map_err(|e| match e.errno() {
            libc::EINVAL | libc::ENXIO => Error::new(
                ErrorCode::Errno(e.errno()),
                OP,
                format!("{OP}: needs the in-kernel irqchip (create the VM with the irqchip option)"),
            ),
            errno => Error::errno(OP, errno),
        })
    }

    /// The pages of `slot` written since the last call, one bit per page.
    pub fn get_dirty_log(&self, slot: MemSlot) -> Result<Vec<u64>> {
        const OP: &str = "getDirtyLog";
        let state = self.lock(OP)?;
        let s = &state.slots[state.slot_index(OP, slot)?];
        if !s.dirty_log {
            return Err(Error::invalid(OP, format!("slot {slot} was added without dirtyLog")));
        }
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        fd.get_dirty_log(slot, s.region.len()).op(OP)
    }

    /// Creates vcpu `id` (0 ≤ id < KVM's maximum vcpu id). Run it on the thread that
    /// created it.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, VmConfig};
    /// # let vm = Kvm::open(None)?.create_vm(VmConfig::default())?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// assert!(vm.create_vcpu(0).is_err()); // EEXIST
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn create_vcpu(&self, id: usize) -> Result<KvmVcpu> {
        const OP: &str = "createVcpu";
        if id >= self.shared.max_vcpu_id {
            return Err(Error::invalid(
                OP,
                format!("vcpu id {id} is out of range (0..{})", self.shared.max_vcpu_id),
            ));
        }
        let mut state = self.lock(OP)?;
        let fd = state.fd.as_ref().ok_or_else(|| Error::closed(OP, "VM"))?;
        let vcpu_fd = fd.create_vcpu(id as u64).map_err(|e| match e.errno() {
            libc::EEXIST => Error::new(
                ErrorCode::Errno(libc::EEXIST),
                OP,
                format!("vcpu {id} already exists in this VM"),
            ),
            errno => Error::errno(OP, errno),
        })?;
        let vcpu = KvmVcpu::new(id, vcpu_fd, self.clone())?;
        state.vcpus.retain(|w| w.strong_count() > 0);
        state.vcpus.push(Arc::downgrade(vcpu.run_shared()));
        Ok(vcpu)
    }

    pub(crate) fn shared(&self) -> &VmShared {
        &self.shared
    }

    /// Closes the VM: every vcpu of it is marked closed and kicked out of `run()` (on any
    /// thread), and, once none is inside the guest any more (or after
    /// [`CLOSE_WAIT`]), the memory slots are released (views keep their own mapping) and
    /// the fd is closed. Idempotent.
    pub fn close(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.closed.store(true, Ordering::Release);
        let vcpus: Vec<_> = state.vcpus.drain(..).filter_map(|w| w.upgrade()).collect();
        for vcpu in &vcpus {
            vcpu.closed.store(true, Ordering::Release);
            super::signal::VcpuSignalHandle::kick_closed(vcpu);
        }
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        while vcpus.iter().any(|v| v.running_tid.load(Ordering::Acquire) != 0) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
            for vcpu in &vcpus {
                super::signal::VcpuSignalHandle::kick_closed(vcpu);
            }
        }
        state.slots.clear();
        state.fd = None;
    }
}
