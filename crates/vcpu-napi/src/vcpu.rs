//! `NativeVcpu`: run, exit handling through JS callbacks, the async runner, signal
//! handles.
//!
//! The hot path builds no JS objects and passes no arguments: `run()` (a function bound
//! to the vcpu, see `bind`) returns a small exit code and describes an `Io`/`Mmio`
//! access in the exit record; the data stays in `kvm_run`, which JS views through one
//! external `ArrayBuffer` (see `exits`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use vcpu_kvm::{KvmVcpu, Vcpu, VcpuExit};

use crate::args::{big, u64_of};
use crate::error::{closed, invalid, to_napi, IntoNapi, Result};
use crate::exits::{self, Records, EXIT_RECORD_LEN, HYPERCALL_RECORD_LEN};
use crate::external::external_arraybuffer;

/// The facade's trampolines take no arguments: what they need is in the records.
pub type Callback<'a> = Function<'a, (), Unknown<'a>>;

/// The async runner's callback: `(error, event)`, event = phase * 256 + exit code,
/// phase 0 = handle this exit (return true to go on), 1 = the final exit.
pub type AsyncCallback = ThreadsafeFunction<u32, bool, u32, Status, true>;
pub const PHASE_FINAL: u32 = 256;

/// The payload of the last exit, for kinds that have one.
#[napi(object)]
pub struct ExitDetail {
    pub kind: String,
    pub hardware_entry_failure_reason: Option<BigInt>,
    pub suberror: Option<u32>,
    pub exception: Option<u32>,
    pub error_code: Option<u32>,
    pub pc: Option<BigInt>,
    pub dr6: Option<BigInt>,
    pub dr7: Option<BigInt>,
    pub vector: Option<u32>,
    pub index: Option<u32>,
    pub data: Option<BigInt>,
    pub write: Option<bool>,
    pub reason: Option<u32>,
}

/// The vcpu and what the JS side shares with it; owned by the `NativeVcpu` and by the
/// bound `run` function.
struct VcpuState {
    vcpu: RefCell<Option<Arc<KvmVcpu>>>,
    last: Arc<std::sync::Mutex<VcpuExit>>,
    /// Keep the facade's typed arrays alive (and the pointers in `records` valid).
    arrays: RefCell<Option<(Float64Array, BigUint64Array, Option<Uint8Array>)>>,
    records: Cell<Option<Records>>,
    /// What keeps the `kvm_run` mapping alive for the JS view of it; emptied once that
    /// view is detached, so closing releases the kernel's vcpu (and VM) at once.
    run_view: RefCell<Option<RunView>>,
}

/// The `kvm_run` mapping as the JS view's owner holds it.
type RunView = Arc<std::sync::Mutex<Option<Arc<vcpu_kvm::kvm::RunShared>>>>;

impl VcpuState {
    /// Calls `f` with the open vcpu; `ECLOSED` once it (or its VM) is closed.
    /// A vcpu closed meanwhile (from one of its own handlers, or by closing its VM) is
    /// released here, once nothing borrows it.
    fn with<R>(&self, op: &str, f: impl FnOnce(&Arc<KvmVcpu>) -> Result<R>) -> Result<R> {
        let (result, closed_now) = {
            let guard = self.vcpu.borrow();
            match guard.as_ref() {
                Some(v) if !v.is_closed() => {
                    let result = f(v);
                    (result, v.is_closed())
                }
                Some(_) => (Err(closed(op, "vcpu")), true),
                None => (Err(closed(op, "vcpu")), false),
            }
        };
        if closed_now {
            if let Ok(mut slot) = self.vcpu.try_borrow_mut() {
                slot.take();
            }
        }
        result
    }

    fn records(&self, op: &str) -> Result<Records> {
        self.records
            .get()
            .ok_or_else(|| invalid(op, "the vcpu's records are not bound"))
    }

    fn set_last(&self, exit: VcpuExit) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = exit;
    }

    fn last(&self) -> VcpuExit {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One run: the exit's code (`Intr` when an exit was requested). A run interrupted
    /// only by the liveness tick or a stray signal goes on, unless `alive` says this
    /// thread is going away (a worker being terminated, process exit).
    fn run(&self, v: &KvmVcpu, rec: &Records, alive: &dyn Fn() -> bool) -> Result<u32> {
        let exit = run_to_exit(v, alive, || exits::run(v, rec)).map_err(to_napi)?;
        self.set_last(exit);
        Ok(exit.index() as u32)
    }
}

/// Whether this JS thread can still run JavaScript (false once its worker is being
/// terminated or the process is exiting).
fn js_alive(env: &Env) -> bool {
    let mut script = std::ptr::null_mut();
    let mut result = std::ptr::null_mut();
    // SAFETY: plain Node-API calls on the current env, on its own thread.
    unsafe {
        sys::napi_create_string_utf8(env.raw(), c"0".as_ptr(), 1, &mut script) == sys::Status::napi_ok
            && sys::napi_run_script(env.raw(), script, &mut result) == sys::Status::napi_ok
    }
}

/// Runs `once` until it gives an exit or an error; an interruption someone asked for is
/// the exit `Intr`, while a stray signal or the liveness tick enters the guest again,
/// unless `alive` says the thread is going away.
pub fn run_to_exit(
    vcpu: &KvmVcpu,
    alive: &dyn Fn() -> bool,
    mut once: impl FnMut() -> vcpu_kvm::Result<VcpuExit>,
) -> vcpu_kvm::Result<VcpuExit> {
    loop {
        match once() {
            Err(e) if e.is_interrupted() && vcpu.interrupted_by_request() => return Ok(VcpuExit::Intr),
            Err(e) if e.is_interrupted() && alive() => continue,
            other => return other,
        }
    }
}

/// A vcpu thread's last word to JS: the final exit, or the error (as `"<CODE>:<op>\u{1}
/// message"`, which the facade turns back into a `VcpuError`).
pub fn report_final(cb: &AsyncCallback, result: Result<VcpuExit>) {
    let value = result
        .map(|exit| PHASE_FINAL + exit.index() as u32)
        .map_err(|e| napi::Error::new(Status::GenericFailure, format!("{}\u{1}{}", e.status, e.reason)));
    cb.call(value, ThreadsafeFunctionCallMode::Blocking);
}

fn js_err(e: napi::Error) -> napi::Error<String> {
    // Keeps the status: a pending exception (the handler's own error) is rethrown by the
    // facade unchanged.
    napi::Error::new(e.status.as_ref().to_string(), e.reason.clone())
}

fn call_sync<'a>(cb: &'a Callback<'a>) -> impl FnMut() -> Result<()> + 'a {
    move || cb.call(()).map(|_| ()).map_err(js_err)
}

#[napi]
pub struct NativeVcpu {
    state: Rc<VcpuState>,
}

impl NativeVcpu {
    pub fn new(vcpu: KvmVcpu) -> Self {
        // JS threads check, on each tick, that they are still wanted (see `VcpuState::run`).
        vcpu.set_liveness_tick(true);
        NativeVcpu {
            state: Rc::new(VcpuState {
                vcpu: RefCell::new(Some(Arc::new(vcpu))),
                last: Arc::new(std::sync::Mutex::new(VcpuExit::Intr)),
                arrays: RefCell::new(None),
                records: Cell::new(None),
                run_view: RefCell::new(None),
            }),
        }
    }

    /// Calls `f` with the open vcpu; `ECLOSED` once it (or its VM) is closed.
    pub fn with<R>(&self, op: &str, f: impl FnOnce(&KvmVcpu) -> Result<R>) -> Result<R> {
        self.state.with(op, |v| f(v))
    }

    /// Where the last exit is kept, for a vcpu thread to update.
    pub fn last_exit_slot(&self) -> Arc<std::sync::Mutex<VcpuExit>> {
        self.state.last.clone()
    }

    /// The vcpu itself, to run on another thread.
    pub fn vcpu_arc(&self, op: &str) -> Result<Arc<KvmVcpu>> {
        self.state.with(op, |v| Ok(v.clone()))
    }

    /// As `with`, after writing back a hypercall the facade's handler answered (its
    /// results belong in the registers `f` reads or writes).
    pub fn with_answered<R>(&self, op: &str, f: impl FnOnce(&KvmVcpu) -> Result<R>) -> Result<R> {
        let rec = self.state.records.get();
        self.state.with(op, |v| {
            if let Some(rec) = rec {
                exits::finish_answered(v, &rec).js()?;
            }
            f(v)
        })
    }
}

#[napi]
impl NativeVcpu {
    #[napi(getter)]
    pub fn id(&self) -> Result<u32> {
        self.with("id", |v| Ok(v.id() as u32))
    }

    /// Binds the facade's exit record, hypercall record and (where JS cannot view
    /// `kvm_run`) scratch buffer to this vcpu, and returns its `run` function:
    /// `() => exitCode` (an index in `exitKinds()`, `Intr` when interrupted). A plain
    /// function, so each run costs one call with no receiver to check.
    #[napi(ts_return_type = "() => number")]
    pub fn bind<'env>(
        &self,
        env: &'env Env,
        mut exit_record: Float64Array,
        mut hypercall_record: BigUint64Array,
        scratch: Option<Uint8Array>,
    ) -> Result<Function<'env, (), u32>> {
        if exit_record.len() < EXIT_RECORD_LEN || hypercall_record.len() < HYPERCALL_RECORD_LEN {
            return Err(invalid("bind", "records are too short"));
        }
        let mut scratch = scratch;
        // SAFETY: pointers into the typed arrays stored just below, which keep them alive
        // (see `Records`).
        let records = unsafe {
            Records {
                exit: exit_record.as_mut().as_mut_ptr(),
                hypercall: hypercall_record.as_mut().as_mut_ptr(),
                scratch: scratch.as_mut().map(|s| {
                    let s = s.as_mut();
                    (s.as_mut_ptr(), s.len())
                }),
            }
        };
        *self.state.arrays.borrow_mut() = Some((exit_record, hypercall_record, scratch));
        self.state.records.set(Some(records));
        let state = self.state.clone();
        env.create_function_from_closure("run", move |ctx| {
            match state.with("run", |v| state.run(v, &records, &|| js_alive(ctx.env))) {
                Ok(code) => Ok(code),
                Err(e) => {
                    // Thrown as a JS error with our code; the return value is ignored.
                    ctx.env.throw_error(&e.reason, Some(e.status.as_ref()))?;
                    Ok(0)
                }
            }
        })
        .map_err(js_err)
    }

    /// The last exit with its payload.
    #[napi]
    pub fn last_exit(&self) -> ExitDetail {
        let exit = self.state.last();
        let mut d = ExitDetail {
            kind: exit.kind().to_string(),
            hardware_entry_failure_reason: None,
            suberror: None,
            exception: None,
            error_code: None,
            pc: None,
            dr6: None,
            dr7: None,
            vector: None,
            index: None,
            data: None,
            write: None,
            reason: None,
        };
        match exit {
            VcpuExit::FailEntry {
                hardware_entry_failure_reason,
            } => d.hardware_entry_failure_reason = Some(big(hardware_entry_failure_reason)),
            VcpuExit::InternalError { suberror } => d.suberror = Some(suberror),
            VcpuExit::Exception { exception, error_code } => {
                d.exception = Some(exception);
                d.error_code = Some(error_code);
            }
            VcpuExit::Debug {
                exception,
                pc,
                dr6,
                dr7,
            } => {
                d.exception = Some(exception);
                d.pc = Some(big(pc));
                d.dr6 = Some(big(dr6));
                d.dr7 = Some(big(dr7));
            }
            VcpuExit::IoapicEoi { vector } => d.vector = Some(vector.into()),
            VcpuExit::MsrAccess { index, data, write } => {
                d.index = Some(index);
                d.data = Some(big(data));
                d.write = Some(write);
            }
            VcpuExit::Unknown { reason } => d.reason = Some(reason),
            _ => {}
        }
        d
    }

    /// Handles the pending `Io` exit with `cb` (see `exits::handle_access`). Over
    /// views the facade needs no call: it reads the exit record and the data in place.
    #[napi]
    pub fn handle_io(&self, #[napi(ts_arg_type = "() => void")] cb: Callback) -> Result<()> {
        let rec = self.state.records("handleIo")?;
        self.state.with("handleIo", |v| {
            exits::handle_access(v, &rec, false, &mut call_sync(&cb))
        })
    }

    /// Handles the pending `Mmio` exit, as `handleIo`.
    #[napi]
    pub fn handle_mmio(&self, #[napi(ts_arg_type = "() => void")] cb: Callback) -> Result<()> {
        let rec = self.state.records("handleMmio")?;
        self.state.with("handleMmio", |v| {
            exits::handle_access(v, &rec, true, &mut call_sync(&cb))
        })
    }

    /// Runs, handling Io/Mmio/Hypercall exits with the callbacks given, and returns the
    /// code of the first exit without one.
    #[napi]
    pub fn run_until(
        &self,
        env: &Env,
        #[napi(ts_arg_type = "(() => void) | null | undefined")] io: Option<Callback>,
        #[napi(ts_arg_type = "(() => void) | null | undefined")] mmio: Option<Callback>,
        #[napi(ts_arg_type = "(() => void) | null | undefined")] hypercall: Option<Callback>,
    ) -> Result<u32> {
        let rec = self.state.records("runUntil")?;
        let state = &self.state;
        state.with("runUntil", |v| loop {
            let code = state.run(v, &rec, &|| js_alive(env))?;
            let exit = state.last();
            let cb = match exit {
                VcpuExit::Io => io.as_ref(),
                VcpuExit::Mmio => mmio.as_ref(),
                VcpuExit::Hypercall => hypercall.as_ref(),
                _ => None,
            };
            match cb {
                Some(cb) => exits::handle(v, &rec, exit, &mut call_sync(cb))?,
                None => return Ok(code),
            }
        })
    }

    /// Runs on a new native thread until an exit without a handler (or a kick): each
    /// handled exit is delivered to `cb` on the JS thread while the vcpu thread waits for
    /// its answer, then the final exit. See `AsyncCallback` for the protocol.
    #[napi]
    pub fn run_async(
        &self,
        #[napi(ts_arg_type = "(err: Error | null, event: number) => boolean")] cb: AsyncCallback,
        io: bool,
        mmio: bool,
        hypercall: bool,
    ) -> Result<()> {
        let rec = self.state.records("runAsync")?;
        let vcpu = self.state.with("runAsync", |v| Ok(v.clone()))?;
        let last = self.state.last.clone();
        std::thread::Builder::new()
            .name(format!("vcpu-{}", vcpu.id()))
            .spawn(move || run_on_thread(&vcpu, &rec, &last, &cb, (io, mmio, hypercall)))
            .map_err(|e| invalid("runAsync", format!("cannot start the vcpu thread: {e}")))?;
        Ok(())
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
        unsafe { external_arraybuffer(env, ptr, len, Box::new(view)) }
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
        self.with("signalHandle", |v| Ok(v.signal_handle().id() as f64))
    }

    #[napi]
    pub fn on_suspend(&self) -> Result<()> {
        self.with("onSuspend", |v| v.on_suspend().js())
    }

    #[napi]
    pub fn enable_raw_capability(&self, cap: f64, args: Vec<BigInt>) -> Result<()> {
        const OP: &str = "enableRawCapability";
        let cap = crate::args::uint(OP, "cap", cap, u32::MAX.into())? as u32;
        if args.len() != 4 {
            return Err(invalid(OP, "args must hold exactly 4 bigints"));
        }
        let mut raw = [0u64; 4];
        for (r, a) in raw.iter_mut().zip(&args) {
            *r = u64_of(OP, "args", a)?;
        }
        // SAFETY: this is the trait's own contract, passed on to the caller: capabilities
        // that take pointers in `args` are documented as unsafe in the facade.
        self.with(OP, |v| unsafe { v.enable_raw_capability(cap, &raw) }.js())
    }

    #[napi]
    pub fn interrupt(&self, vector: f64) -> Result<()> {
        let vector = crate::args::uint("interrupt", "vector", vector, 255.0)? as u32;
        self.with("interrupt", |v| v.interrupt(vector).js())
    }

    #[napi]
    pub fn nmi(&self) -> Result<()> {
        self.with("nmi", |v| v.nmi().js())
    }

    /// Long mode; with `rip`, also the general registers (all 0 but RIP, RSP, RFLAGS).
    #[napi]
    pub fn setup_long_mode(&self, rip: Option<BigInt>, rsp: Option<BigInt>) -> Result<()> {
        const OP: &str = "setupLongMode";
        let rip = rip.map(|r| u64_of(OP, "rip", &r)).transpose()?;
        let rsp = rsp.map(|r| u64_of(OP, "rsp", &r)).transpose()?.unwrap_or(0);
        self.with(OP, |v| match rip {
            Some(rip) => v.setup_long_mode_at(rip, rsp).js(),
            None => v.setup_long_mode().js(),
        })
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

/// Why the vcpu thread stopped without a final exit: the JS side said so (a handler
/// threw, and the promise is already rejected) or the JS thread is gone.
const STOPPED: &str = "STOPPED:runAsync";

/// States of the async runner's answer slot.
const WAITING: u8 = 0;
const GO_ON: u8 = 1;
const STOP: u8 = 2;
/// How long the vcpu thread spins for the JS thread's answer before it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// The JS thread's answer to one exit, for the vcpu thread waiting on `slot`. Dropped
/// unanswered (the JS thread went away), it answers STOP, so the vcpu thread never
/// waits forever.
struct Reply {
    slot: Arc<AtomicU8>,
    vcpu_thread: std::thread::Thread,
    /// Whether this reply was sent. (Not the slot's state: by the time a sent reply is
    /// dropped, the vcpu thread may already be waiting on the slot for the next exit.)
    sent: bool,
}

impl Reply {
    fn send(mut self, answer: u8) {
        self.sent = true;
        self.slot.store(answer, Ordering::Release);
        self.vcpu_thread.unpark();
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.slot.store(STOP, Ordering::Release);
            self.vcpu_thread.unpark();
        }
    }
}

/// The async runner's vcpu thread: runs, hands each handled exit to the JS thread and
/// waits for it, and reports the final exit (or an error) last.
fn run_on_thread(
    vcpu: &KvmVcpu,
    rec: &Records,
    last: &std::sync::Mutex<VcpuExit>,
    cb: &AsyncCallback,
    (io, mmio, hypercall): (bool, bool, bool),
) {
    let answer = Arc::new(AtomicU8::new(WAITING));
    let result: Result<VcpuExit> = (|| loop {
        let exit = run_to_exit(vcpu, &|| true, || exits::run(vcpu, rec)).map_err(to_napi)?;
        *last.lock().unwrap_or_else(|p| p.into_inner()) = exit;
        let code = exit.index() as u32;
        if !exits::handled(exit, io, mmio, hypercall) {
            return Ok(exit);
        }
        let mut invoke = || -> Result<()> {
            answer.store(WAITING, Ordering::Release);
            let reply = Reply {
                slot: answer.clone(),
                vcpu_thread: std::thread::current(),
                sent: false,
            };
            let status = cb.call_with_return_value(Ok(code), ThreadsafeFunctionCallMode::Blocking, move |ret, _env| {
                reply.send(if ret.unwrap_or(false) { GO_ON } else { STOP });
                Ok(())
            });
            if status != Status::Ok {
                return Err(napi::Error::new(STOPPED.to_string(), "stopped"));
            }
            // Spins briefly, then sleeps until the reply unparks it (park may also return
            // spuriously): on an idle host a sleeping thread takes tens of µs to wake.
            let started = std::time::Instant::now();
            loop {
                match answer.load(Ordering::Acquire) {
                    GO_ON => return Ok(()),
                    STOP => return Err(napi::Error::new(STOPPED.to_string(), "stopped")),
                    _ if started.elapsed() < SPIN => std::hint::spin_loop(),
                    _ => std::thread::park(),
                }
            }
        };
        exits::handle(vcpu, rec, exit, &mut invoke)?;
    })();
    match result {
        Err(e) if e.status == STOPPED => {}
        other => report_final(cb, other),
    }
}
