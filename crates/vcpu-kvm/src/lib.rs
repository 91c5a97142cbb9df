//! `vcpu-kvm`: crosvm's `Vcpu` trait and its Linux KVM implementation.
//!
//! ```no_run
//! use vcpu_kvm::{Kvm, Vcpu, VcpuExit, VmConfig, IoOperation};
//!
//! let kvm = Kvm::open(None)?;
//! let vm = kvm.create_vm(VmConfig::default())?;
//! let (_slot, _ram) = vm.add_memory(0, 2 << 20, false, false)?;
//! // 64-bit guest at 0x1000: `mov al, 'A'; out 0x10, al; hlt`
//! vm.write(0x1000, &[0xb0, b'A', 0xe6, 0x10, 0xf4])?;
//! let vcpu = vm.create_vcpu(0)?;
//! vcpu.setup_long_mode()?;
//! vcpu.set_regs(&kvm_bindings::kvm_regs { rip: 0x1000, rflags: 2, ..Default::default() })?;
//! loop {
//!     match vcpu.run()? {
//!         VcpuExit::Io => vcpu.handle_io(&mut |p| {
//!             if let IoOperation::Write(d) = p.operation { print!("{}", d[0] as char) }
//!         })?,
//!         VcpuExit::Hlt => break,
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! # Ok::<(), vcpu_kvm::Error>(())
//! ```

pub mod arch;
mod error;
pub mod exit;
mod hypercall;
mod io;
pub mod kvm;
mod record;
mod signal_handle;
pub mod vmm;

/// The kvm-bindings structs the state accessors take and return.
pub use kvm_bindings;

pub use error::{Error, ErrorCode, Result};
pub use exit::VcpuExit;
pub use hypercall::HypercallAbi;
pub use io::{IoOperation, IoParams};
pub use kvm::{GuestRegion, Kvm, KvmVcpu, KvmVm, VmConfig};
pub use record::{ExitRecord, Pending};
pub use signal_handle::{VcpuSignalHandle, VcpuSignalHandleInner, WeakVcpuSignalHandle};

/// An index in the list of guest memory regions (a KVM memory slot).
pub type MemSlot = u32;

/// A virtual CPU, as crosvm's `hypervisor::Vcpu`.
///
/// A vcpu runs on the thread that created it; `run` and the `handle_*` methods are
/// called there. Anything may call [`Vcpu::signal_handle`] and use the handle from any
/// thread.
pub trait Vcpu: Send + Sync {
    /// Runs the guest until it exits and says why.
    ///
    /// An interrupted run (immediate exit set, or a signal) is `Err` with
    /// [`Error::is_interrupted`]; a guest can never make this panic.
    fn run(&self) -> Result<VcpuExit>;

    /// The vcpu id given at creation.
    fn id(&self) -> usize;

    /// Sets `kvm_run.immediate_exit`: while true, every `run` returns `EINTR` at once.
    fn set_immediate_exit(&self, exit: bool);

    /// A handle that makes `run` return `EINTR` from another thread or a signal handler.
    fn signal_handle(&self) -> VcpuSignalHandle;

    /// After `run` returned [`VcpuExit::Mmio`], on the same thread: calls `handle_fn`
    /// with the access; for a read, its data (zeroed first) goes to the guest.
    fn handle_mmio(&self, handle_fn: &mut dyn FnMut(IoParams) -> Result<()>) -> Result<()>;

    /// After `run` returned [`VcpuExit::Io`], on the same thread: calls `handle_fn` once
    /// per element (string I/O has `count > 1`), in order; a read's data goes to the guest.
    fn handle_io(&self, handle_fn: &mut dyn FnMut(IoParams)) -> Result<()>;

    /// Tells the hypervisor that userspace is pausing this vcpu (`KVM_KVMCLOCK_CTRL`),
    /// so the guest's watchdogs do not fire on resume.
    fn on_suspend(&self) -> Result<()>;

    /// `KVM_ENABLE_CAP` on the vcpu.
    ///
    /// # Safety
    ///
    /// Some capabilities read `args` as pointers: the caller makes sure they point to
    /// memory laid out as the kernel expects for `cap`, and that it stays valid.
    unsafe fn enable_raw_capability(&self, cap: u32, args: &[u64; 4]) -> Result<()>;

    /// After `run` returned [`VcpuExit::Hypercall`], on the same thread: gives
    /// `handle_fn` the call and writes its results back into the vcpu.
    fn handle_hypercall(&self, handle_fn: &mut dyn FnMut(&mut HypercallAbi) -> Result<()>) -> Result<()> {
        let _ = handle_fn;
        Err(Error::new(
            ErrorCode::Errno(libc::ENOSYS),
            "handleHypercall",
            "this backend has no hypercalls",
        ))
    }
}
