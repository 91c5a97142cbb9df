//! `KvmVm`: a VM file descriptor, its memory slots and its vcpus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use kvm_ioctls::{Cap, VmFd};

use super::memory_map::MemoryMap;
use super::vcpu::KvmVcpu;
use super::vm_persist::Restored;
use super::Kvm;
use crate::error::{Context, Error, ErrorCode, Result};
use crate::Vcpu;

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
    /// On arm64, where hypercalls are SMCCC calls and the port means nothing, `None`
    /// leaves every SMCCC call to KVM (which answers NOT_SUPPORTED for the unknown).
    pub hypercall_port: Option<u16>,
    /// x86: `rdmsr`/`wrmsr` of an MSR KVM does not know exit to userspace as
    /// `MsrAccess` (`KVM_CAP_X86_USER_SPACE_MSR`) instead of giving the guest #GP.
    pub userspace_msr: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            irqchip: false,
            hypercall_port: Some(DEFAULT_HYPERCALL_PORT),
            userspace_msr: false,
        }
    }
}

pub(super) struct VmState {
    pub(super) fd: Option<VmFd>,
    pub(super) memory: MemoryMap,
    pub(super) vcpus: Vec<Weak<KvmVcpu>>,
    /// What the VM's last snapshot or restore left: the base of the next diff, and
    /// saved vcpus not created yet.
    pub(super) restored: Restored,
}

impl VmState {
    /// The VM fd, or `ECLOSED`.
    pub(super) fn fd(&self, op: &'static str) -> Result<&VmFd> {
        self.fd.as_ref().ok_or_else(|| Error::closed(op, "VM"))
    }

    /// The vcpus not closed or dropped.
    pub(super) fn live_vcpus(&self) -> Vec<Arc<KvmVcpu>> {
        self.vcpus
            .iter()
            .filter_map(|w| w.upgrade())
            .filter(|v| !v.is_closed())
            .collect()
    }
}

pub(crate) struct VmShared {
    pub(super) state: Mutex<VmState>,
    closed: AtomicBool,
    pub(crate) config: VmConfig,
    pub(crate) run_size: usize,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) sync_regs: bool,
    pub(super) max_slots: usize,
    max_vcpu_id: usize,
    /// What takes some run outcomes before the caller (a debugger).
    pub(crate) hook: super::run_hook::HookSlot,
    /// What the architecture keeps per VM (x86: the CPUID vcpus start with).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) arch: super::arch::VmArch,
}

/// A KVM virtual machine. Cloning gives another handle to the same VM (any thread).
#[derive(Clone)]
pub struct KvmVm {
    pub(super) shared: Arc<VmShared>,
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
        let arch = super::arch::init_vm(kvm, &fd, &config)?;
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
                    memory: MemoryMap::default(),
                    vcpus: Vec::new(),
                    restored: Restored::default(),
                }),
                closed: AtomicBool::new(false),
                hook: Default::default(),
                config,
                run_size,
                sync_regs,
                max_slots,
                max_vcpu_id,
            }),
        })
    }

    /// `KVM_ENABLE_CAP` on the VM.
    ///
    /// # Safety
    ///
    /// Some capabilities read `args` as pointers: the caller makes sure they point to
    /// memory laid out as the kernel expects for `cap`, and that it stays valid.
    pub unsafe fn enable_raw_capability(&self, cap: u32, args: &[u64; 4]) -> Result<()> {
        const OP: &str = "enableCapability";
        let state = self.lock(OP)?;
        let enable = kvm_bindings::kvm_enable_cap {
            cap,
            args: *args,
            ..Default::default()
        };
        let fd = state.fd(OP)?;
        super::ioctls::enable_cap(fd, &enable).op(OP)
    }

    pub(super) fn lock(&self, op: &'static str) -> Result<MutexGuard<'_, VmState>> {
        // Every update of VmState is a single push/remove: a panic elsewhere cannot
        // leave it half-written, so a poisoned lock is still consistent.
        let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.fd.is_none() || self.is_closed() {
            return Err(Error::closed(op, "VM"));
        }
        Ok(state)
    }

    /// Runs `f` with the VM fd (under the VM's lock), or `ECLOSED`.
    pub(crate) fn with_fd<T>(&self, op: &'static str, f: impl FnOnce(&VmFd) -> Result<T>) -> Result<T> {
        let state = self.lock(op)?;
        f(state.fd(op)?)
    }

    /// A reference that does not keep the VM alive.
    pub fn downgrade(&self) -> WeakVm {
        WeakVm(Arc::downgrade(&self.shared))
    }

    /// Whether two handles name the same VM.
    pub fn same_vm(&self, other: &KvmVm) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The configuration the VM was created with.
    pub fn config(&self) -> VmConfig {
        self.shared.config
    }

    /// True once [`KvmVm::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Completes the in-kernel irqchip where KVM wants that done once every vcpu exists
    /// (arm64's GIC); a no-op elsewhere and after the first time. A VM's first run, its
    /// first irqfd and its first irq line do it; vcpus cannot be added after it.
    pub(crate) fn finalize_irqchip(&self, op: &'static str) -> Result<()> {
        super::arch::finalize_irqchip(&self.shared.arch, op)
    }

    /// Creates vcpu `id` (0 ≤ id < KVM's maximum vcpu id). In a VM restored from a
    /// snapshot, a saved id comes back with all its state.
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
    pub fn create_vcpu(&self, id: usize) -> Result<Arc<KvmVcpu>> {
        const OP: &str = "createVcpu";
        if id >= self.shared.max_vcpu_id {
            return Err(Error::invalid(
                OP,
                format!("vcpu id {id} is out of range (0..{})", self.shared.max_vcpu_id),
            ));
        }
        let mut state = self.lock(OP)?;
        super::arch::check_new_vcpu(&self.shared.arch)?;
        let fd = state.fd(OP)?;
        let vcpu_fd = fd.create_vcpu(id as u64).map_err(|e| match e.errno() {
            libc::EEXIST => Error::new(
                ErrorCode::Errno(libc::EEXIST),
                OP,
                format!("vcpu {id} already exists in this VM"),
            ),
            errno => Error::errno(OP, errno),
        })?;
        let saved = state.restored.take_vcpu(id as u32);
        let vcpu = match KvmVcpu::new(id, vcpu_fd, self.clone(), saved.is_some()) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                if let Some(saved) = saved {
                    state.restored.put_back(saved);
                }
                return Err(e);
            }
        };
        if let Some(saved) = saved {
            if let Err(e) = super::arch::restore_vcpu(&vcpu, &saved) {
                // Kept for another try: the vcpu fd goes with `vcpu`.
                state.restored.put_back(saved);
                return Err(e);
            }
        }
        if let Some(hook) = self.shared.hook.get() {
            hook.vcpu_created(&vcpu);
        }
        state.vcpus.retain(|w| w.strong_count() > 0);
        state.vcpus.push(Arc::downgrade(&vcpu));
        Ok(vcpu)
    }

    pub(crate) fn shared(&self) -> &VmShared {
        &self.shared
    }

    /// How many memory slots KVM gives this VM.
    pub(super) fn max_slots(&self) -> usize {
        self.shared.max_slots
    }

    /// The live vcpus, by id.
    pub fn vcpus(&self) -> Vec<Arc<KvmVcpu>> {
        let mut vcpus = match self.lock("vcpus") {
            Ok(state) => state.live_vcpus(),
            Err(_) => Vec::new(),
        };
        vcpus.sort_by_key(|v| v.id());
        vcpus
    }

    /// Closes the VM: every vcpu of it is closed and kicked out of `run()` (on any
    /// thread), and the fd is closed. The memory slots are released once no vcpu is
    /// inside `run()` any more: at once if they all leave within [`CLOSE_WAIT`] (views
    /// keep their own mapping), else when the last vcpu is dropped, so no mapping ever
    /// goes while a thread may still be inside `KVM_RUN`. No lock is held while waiting.
    /// Idempotent.
    pub fn close(&self) {
        let vcpus: Vec<Arc<KvmVcpu>> = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.closed.store(true, Ordering::Release);
            state.vcpus.drain(..).filter_map(|w| w.upgrade()).collect()
        };
        let all_left = super::vcpu::close_all(&vcpus.iter().map(|v| &**v).collect::<Vec<_>>());
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if all_left {
            state.memory.clear();
        }
        state.fd = None;
    }
}
