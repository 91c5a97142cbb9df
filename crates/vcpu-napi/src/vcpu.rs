//! `NativeVcpu`: run, exit handling through JS callbacks, the async runner, signal
//! handles.
//!
//! The hot path builds no JS objects and passes no arguments: `run()` (a function bound
//! to the vcpu, see `bind`) returns a small exit code and describes an `Io`/`Mmio`
//! access in the exit record; the data stays in `kvm_run`, which JS views through one
//! external `ArrayBuffer` (see `exits`).

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use vcpu_kvm::{ExitRecord, IoOperation, KvmVcpu, Pending, Vcpu};

pub use crate::async_runner::run_to_exit;
use crate::error::{closed, invalid, IntoNapi, Result};
use crate::external::external_arraybuffer;

/// The facade's trampolines take no arguments: what they need is in the exit record.
pub type Callback<'a> = Function<'a, (), Unknown<'a>>;

/// The vcpu and what the JS side shares with it; owned by the `NativeVcpu` and by the
/// bound `run` function.
pub(crate) struct VcpuState {
    vcpu: RefCell<Option<Arc<KvmVcpu>>>,
    /// The vcpu's number in the process-wide registry (`handles`): for kicks from any
    /// worker, the liveness tick and shutdown.
    handle_id: u64,
    /// The facade's typed arrays the vcpu writes into: its exit record, and where JS
    /// cannot view `kvm_run` (Electron) the buffer an element's data is copied through.
    /// Held here so the memory the vcpu was given stays valid.
    arrays: RefCell<Option<(BigUint64Array, Option<Uint8Array>)>>,
    /// What keeps the `kvm_run` mapping alive for the JS view of it; emptied once that
    /// view is detached, so closing releases the kernel's vcpu (and VM) at once.
    run_view: RefCell<Option<RunView>>,
    /// The JS thread, which alone calls `run` here (a Node environment lives on one
    /// thread): taken once, not asked of the thread-local on every run.
    thread: vcpu_kvm::kvm::VcpuThread,
}

/// The `kvm_run` mapping as the JS view's owner holds it.
type RunView = Arc<std::sync::Mutex<Option<Arc<vcpu_kvm::kvm::RunShared>>>>;

impl Drop for VcpuState {
    fn drop(&mut self) {
        crate::handles::unregister(self.handle_id);
        // The JS object is gone (collected, or its worker is being torn down): nothing can
        // use the vcpu from JS any more, so it is closed, which also stops a native thread
        // still running it (runAsync, the device loop) and lets its fd go.
        if let Some(v) = self.vcpu.get_mut().take() {
            v.close();
            self.let_go(v);
        }
    }
}

impl VcpuState {
    /// Calls `f` with the open vcpu; `ECLOSED` once it (or its VM) is closed.
    /// A vcpu closed meanwhile (from one of its own handlers, or by closing its VM) is
    /// released here, once nothing borrows it.
    pub(crate) fn with<R>(&self, op: &str, f: impl FnOnce(&Arc<KvmVcpu>) -> Result<R>) -> Result<R> {
        self.with_open(f, || closed(op, "vcpu"))
    }

    /// As `with`, in whichever error type `f` has (`closed` makes the `ECLOSED` one): the
    /// per-exit calls stay in `vcpu_kvm::Result`, one pointer wide, until they throw.
    pub(crate) fn with_open<R, E>(
        &self,
        f: impl FnOnce(&Arc<KvmVcpu>) -> std::result::Result<R, E>,
        closed: impl FnOnce() -> E,
    ) -> std::result::Result<R, E> {
        self.with_vcpu::<true, R, E>(f, closed)
    }

    /// `with_open`; `CHECK = false` for a call that refuses a closed vcpu itself with the
    /// same `ECLOSED` (a run: its lifecycle does), which then pays no check of its own.
    #[inline]
    pub(crate) fn with_vcpu<const CHECK: bool, R, E>(
        &self,
        f: impl FnOnce(&Arc<KvmVcpu>) -> std::result::Result<R, E>,
        closed: impl FnOnce() -> E,
    ) -> std::result::Result<R, E> {
        let guard = self.vcpu.borrow();
        let Some(v) = guard.as_ref() else {
            return Err(closed());
        };
        if CHECK && v.is_closed() {
            drop(guard);
            self.release();
            return Err(closed());
        }
        let result = f(v);
        if v.is_closed() {
            drop(guard);
            self.release();
        }
        result
    }

    /// Lets go of a closed vcpu, unless something still borrows it (a handler running
    /// inside one of its calls: then the outermost call does).
    #[cold]
    fn release(&self) {
        let taken = match self.vcpu.try_borrow_mut() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        if let Some(v) = taken {
            self.let_go(v);
        }
    }

    /// Gives the vcpu back its own exit record before this side lets go of it: another
    /// holder (a native thread, the VM's close) may outlive the facade's typed array.
    fn let_go(&self, v: Arc<KvmVcpu>) {
        // SAFETY: `None` points the vcpu back at the record it owns.
        if !unsafe { v.set_exit_record(None) } {
            // A thread stayed inside run() past the wait: it may still write the lent
            // record, so its memory is never freed (a leak, never a use after free).
            if let Ok(mut arrays) = self.arrays.try_borrow_mut() {
                std::mem::forget(arrays.take());
            }
        }
    }

    /// One run, to an exit the record describes (`Intr` when an exit was requested). A
    /// run interrupted only by the liveness tick or a stray signal goes on, unless
    /// `alive` says this thread is going away (a worker being terminated, process exit).
    pub(crate) fn run(&self, v: &KvmVcpu, alive: &dyn Fn() -> bool) -> vcpu_kvm::Result<()> {
        run_to_exit(v, alive, || v.run_in_place_on(self.thread), ())
    }

    /// The copy buffer, where JS cannot view `kvm_run`.
    fn scratch(&self) -> Option<(*mut u8, usize)> {
        let mut arrays = self.arrays.borrow_mut();
        let scratch = arrays.as_mut()?.1.as_mut()?;
        // SAFETY: a view of the typed array held in `arrays`, used on this thread only.
        let s = unsafe { scratch.as_mut() };
        Some((s.as_mut_ptr(), s.len()))
    }
}

/// Whether this JS thread can still run JavaScript (false once its worker is being
/// terminated or the process is exiting).
pub(crate) fn js_alive(env: &Env) -> bool {
    let mut script = std::ptr::null_mut();
    let mut result = std::ptr::null_mut();
    // SAFETY: plain Node-API calls on the current env, on its own thread.
    unsafe {
        sys::napi_create_string_utf8(env.raw(), c"0".as_ptr(), 1, &mut script) == sys::Status::napi_ok
            && sys::napi_run_script(env.raw(), script, &mut result) == sys::Status::napi_ok
    }
}

pub fn js_err(e: napi::Error) -> napi::Error<String> {
    // Keeps the status: a pending exception (the handler's own error) is rethrown by the
    // facade unchanged.
    napi::Error::new(e.status.as_ref().to_string(), e.reason.clone())
}

#[napi]
pub struct NativeVcpu {
    state: Rc<VcpuState>,
    /// The deadline armed on the vcpu's runs, if any (`deadline.rs`).
    pub(crate) deadline: RefCell<Option<vcpu_kvm::kvm::RunDeadline>>,
}

impl NativeVcpu {
    pub fn new(vcpu: Arc<KvmVcpu>) -> Self {
        // JS threads check, on each tick, that they are still wanted (see `VcpuState::run`).
        let handle_id = crate::handles::register(&vcpu.signal_handle());
        NativeVcpu {
            state: Rc::new(VcpuState {
                vcpu: RefCell::new(Some(vcpu)),
                handle_id,
                arrays: RefCell::new(None),
                run_view: RefCell::new(None),
                thread: vcpu_kvm::kvm::VcpuThread::current(),
            }),
            deadline: RefCell::new(None),
        }
    }

    /// Calls `f` with the open vcpu; `ECLOSED` once it (or its VM) is closed.
    pub fn with<R>(&self, op: &str, f: impl FnOnce(&KvmVcpu) -> Result<R>) -> Result<R> {
        self.state.with(op, |v| f(v))
    }

    /// The vcpu itself, to run on another thread.
    pub fn vcpu_arc(&self, op: &str) -> Result<Arc<KvmVcpu>> {
        self.state.with(op, |v| Ok(v.clone()))
    }

    /// The pending access through the copy buffer (where JS cannot view `kvm_run`): per
    /// element, the data is copied in, `cb` runs, and a read's data is copied back.
    fn handle_copied(&self, op: &'static str, mmio: bool, cb: &Callback) -> Result<()> {
        let (ptr, len) = self
            .state
            .scratch()
            .ok_or_else(|| invalid(op, "the vcpu has no copy buffer: the facade reads kvm_run in place"))?;
        let mut failure = None;
        let mut each = |p: vcpu_kvm::IoParams| -> vcpu_kvm::Result<()> {
            let size = p.size().min(len);
            let result = match p.operation {
                IoOperation::Write(data) => {
                    // SAFETY: ptr/len describe the copy buffer held in `arrays`; size <= len.
                    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, size) };
                    cb.call(()).map(|_| ())
                }
                IoOperation::Read(data) => {
                    // SAFETY: as above; the handler fills the buffer inside the call.
                    unsafe { std::ptr::write_bytes(ptr, 0, size) };
                    let r = cb.call(()).map(|_| ());
                    // SAFETY: as above.
                    unsafe { std::ptr::copy_nonoverlapping(ptr, data.as_mut_ptr(), size) };
                    r
                }
            };
            result.map_err(|e| {
                failure = Some(js_err(e));
                vcpu_kvm::Error::invalid(op, "the handler failed")
            })
        };
        let kind = if mmio { Pending::Mmio } else { Pending::Io };
        let result = self.state.with(op, |v| v.handle_access(kind, op, &mut each).js());
        match failure {
            Some(e) => Err(e),
            None => result,
        }
    }
}

#[napi]
impl NativeVcpu {
    #[napi(getter)]
    pub fn id(&self) -> Result<u32> {
        self.with("id", |v| Ok(v.id() as u32))
    }

    /// Gives the vcpu the facade's exit record (at least `ExitRecord::SIZE` bytes) to
    /// write into, and (where JS cannot view `kvm_run`) the buffer to copy an element's
    /// data through; returns the functions bound to it (see `bound_fns`). After `run()`
    /// the record's `kind` is the exit's code, an index in `exitKinds()` (`Intr` when
    /// interrupted).
    #[napi(
        ts_return_type = "{ run: () => void; nextElement: () => void; completeHypercall: () => void; completeMsr: () => void }"
    )]
    pub fn bind<'env>(
        &self,
        env: &'env Env,
        mut record: BigUint64Array,
        scratch: Option<Uint8Array>,
    ) -> Result<Object<'env>> {
        if record.len() * 8 < ExitRecord::SIZE {
            return Err(invalid(
                "bind",
                format!("the exit record needs {} bytes", ExitRecord::SIZE),
            ));
        }
        // SAFETY: a BigUint64Array's elements are 8-byte aligned and it is long enough
        // (checked above); the array is held in `arrays` for as long as this vcpu lives,
        // and only the vcpu's run loop and handlers write it.
        let ptr = unsafe { NonNull::new(record.as_mut().as_mut_ptr().cast::<ExitRecord>()) };
        self.state.with("bind", |v| {
            // SAFETY: see above.
            if unsafe { v.set_exit_record(ptr) } {
                Ok(())
            } else {
                Err(crate::error::busy("bind", "the vcpu is running on another thread"))
            }
        })?;
        *self.state.arrays.borrow_mut() = Some((record, scratch));
        crate::bound_fns::create(env, &self.state)
    }

    /// The last exit with its payload.
    #[napi]
    pub fn last_exit<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let exit = self.with("lastExit", |v| Ok(v.last_exit()))?;
        crate::exits::exit_object(env, exit).map_err(js_err)
    }

    /// Handles the pending `Io` exit through the copy buffer, calling `cb` per element.
    /// (Over views of `kvm_run` the facade needs no call: it handles the exit in place.)
    #[napi]
    pub fn handle_io(&self, #[napi(ts_arg_type = "() => void")] cb: Callback) -> Result<()> {
        self.handle_copied("handleIo", false, &cb)
    }

    /// Handles the pending `Mmio` exit, as `handleIo`.
    #[napi]
    pub fn handle_mmio(&self, #[napi(ts_arg_type = "() => void")] cb: Callback) -> Result<()> {
        self.handle_copied("handleMmio", true, &cb)
    }

    /// A zero-copy `ArrayBuffer` over this vcpu's `kvm_run` mapping (the exit data
    /// lives there), or `null` where external buffers are forbidden. Once per vcpu.
    #[napi(ts_return_type = "ArrayBuffer | null")]
    pub fn run_buffer<'env>(&self, env: &'env Env) -> Result<Option<Unknown<'env>>> {
        let (shared, len) = self.with("runBuffer", |v| Ok(v.run_mapping()))?;
        let ptr = shared.base_ptr();
        let view: RunView = Arc::new(std::sync::Mutex::new(Some(shared)));
        *self.state.run_view.borrow_mut() = Some(view.clone());
        // SAFETY: `view` keeps the kvm_run mapping alive until the buffer is collected,
        // or until `close` has detached the buffer (no JS can reach the memory then).
        unsafe { external_arraybuffer(env, ptr, len, Box::new(view), true) }
            .map_err(|e| invalid("runBuffer", e.reason.clone()))
    }

    #[napi]
    pub fn set_immediate_exit(&self, exit: bool) -> Result<()> {
        self.with("setImmediateExit", |v| {
            v.set_immediate_exit(exit);
            Ok(())
        })
    }

    /// A process-wide id for `kickVcpu`, usable from any worker.
    #[napi]
    pub fn signal_handle_id(&self) -> Result<f64> {
        self.with("signalHandle", |_| Ok(self.state.handle_id as f64))
    }

    #[napi]
    pub fn on_suspend(&self) -> Result<()> {
        self.with("onSuspend", |v| v.on_suspend().js())
    }

    #[napi]
    pub fn enable_raw_capability(&self, cap: f64, args: Vec<BigInt>) -> Result<()> {
        const OP: &str = "enableRawCapability";
        let cap = crate::args::uint(OP, "cap", cap, u32::MAX.into())? as u32;
        let raw = crate::args::four_u64(OP, &args)?;
        // SAFETY: this is the trait's own contract, passed on to the caller: capabilities
        // that take pointers in `args` are documented as unsafe in the facade.
        self.with(OP, |v| unsafe { v.enable_raw_capability(cap, &raw) }.js())
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.state.vcpu.borrow().as_ref().is_none_or(|v| v.is_closed())
    }

    /// Closes the vcpu and releases its fd (deferred to the end of a `runUntil` when
    /// called from one of its handlers). Idempotent.
    /// `run_buffer`: the buffer `runBuffer()` returned, to detach (its views become
    /// empty) so the `kvm_run` mapping, and with it the kernel's vcpu, goes now rather
    /// than when the buffer is collected.
    #[napi]
    pub fn close(&self, run_buffer: Option<ArrayBuffer>) {
        if let Some(v) = self.state.vcpu.borrow().as_ref() {
            v.close();
        }
        crate::handles::unregister(self.state.handle_id);
        if let Ok(mut slot) = self.state.vcpu.try_borrow_mut() {
            slot.take();
        }
        if let Some(buffer) = run_buffer {
            if buffer.detach().is_ok() {
                if let Some(view) = self.state.run_view.borrow_mut().take() {
                    if let Some(shared) = view.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        crate::external::forget_external(shared.base_ptr());
                    }
                }
            }
        }
    }
}
