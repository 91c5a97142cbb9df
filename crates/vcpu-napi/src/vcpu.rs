//! `NativeVcpu`: run, exit handling through JS callbacks, signal handles.
//!
//! The hot path builds no JS objects and passes no arguments: `run()` (a function bound
//! to the vcpu, see `bind`) returns a small exit code and describes an `Io`/`Mmio`
//! access in the exit record, a `Float64Array` the facade owns; the data stays in
//! `kvm_run`, which JS views through one external `ArrayBuffer`. Where external buffers
//! are forbidden (Electron), elements are copied through a scratch buffer instead.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::kvm::IoAccess;
use vcpu_kvm::{HypercallAbi, IoOperation, IoParams, KvmVcpu, Vcpu, VcpuExit};

use crate::args::{big, u64_of};
use crate::error::{closed, invalid, to_napi, IntoNapi, Result};
use crate::external::external_arraybuffer;

pub const EXIT_KINDS: [&str; 20] = VcpuExit::KINDS;
const INTR: u32 = 5;

/// The facade's trampolines take no arguments: what they need is in the records.
pub type Callback<'a> = Function<'a, (), Unknown<'a>>;

/// Exit record (`Float64Array`): address, size, isWrite, count, dataOffset.
const EXIT_RECORD_LEN: usize = 5;

/// Hypercall record (`BigUint64Array`): id, argument count, 6 arguments, count of
/// results the handler set, 4 results (the defaults until set).
const REC_ID: usize = 0;
const REC_NARGS: usize = 1;
const REC_ARGS: usize = 2;
const REC_NRESULTS: usize = REC_ARGS + HypercallAbi::MAX_ARGS;
const REC_RESULTS: usize = REC_NRESULTS + 1;
const REC_LEN: usize = REC_RESULTS + HypercallAbi::MAX_RESULTS;

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
    vcpu: RefCell<Option<KvmVcpu>>,
    last: Cell<VcpuExit>,
    exit_record: RefCell<Option<Float64Array>>,
    hypercall_record: RefCell<Option<BigUint64Array>>,
    /// The copy buffer, only where JS cannot view `kvm_run` (Electron).
    scratch: RefCell<Option<Uint8Array>>,
}

impl VcpuState {
    /// Calls `f` with the open vcpu; `ECLOSED` once it (or its VM) is closed.
    fn with<R>(&self, op: &str, f: impl FnOnce(&KvmVcpu) -> Result<R>) -> Result<R> {
        let guard = self.vcpu.borrow();
        match guard.as_ref() {
            Some(v) if !v.is_closed() => f(v),
            _ => Err(closed(op, "vcpu")),
        }
    }

    fn write_exit_record(&self, access: &IoAccess, count: usize, data_offset: usize) {
        if let Some(rec) = self.exit_record.borrow_mut().as_mut() {
            // SAFETY: the facade's own Float64Array, held by our reference and never
            // detached; JS reads it only after this returns.
            let rec = unsafe { rec.as_mut() };
            if rec.len() >= EXIT_RECORD_LEN {
                rec[0] = access.address as f64;
                rec[1] = access.size as f64;
                rec[2] = if access.is_write { 1.0 } else { 0.0 };
                rec[3] = count as f64;
                rec[4] = data_offset as f64;
            }
        }
    }

    fn run(&self, v: &KvmVcpu) -> Result<u32> {
        match v.run() {
            Ok(exit) => {
                self.last.set(exit);
                if let Some(access) = v.io_access() {
                    self.write_exit_record(&access, access.count, access.data_offset);
                }
                Ok(exit.index() as u32)
            }
            Err(e) if e.is_interrupted() => {
                self.last.set(VcpuExit::Intr);
                Ok(INTR)
            }
            Err(e) => Err(to_napi(e)),
        }
    }

    /// Handles the pending Io/Mmio exit with the facade's trampoline: once per exit
    /// over views (JS walks the elements the exit record describes), or once per element
    /// through `scratch`.
    fn handle_access(&self, v: &KvmVcpu, mmio: bool, cb: &Callback) -> Result<()> {
        let scratch = self.scratch.borrow_mut().as_mut().map(|s| {
            // SAFETY: the facade's own Uint8Array, held by our reference, never detached;
            // JS touches it only inside `cb`, between our copies.
            let s = unsafe { s.as_mut() };
            (s.as_mut_ptr(), s.len())
        });
        let Some(scratch) = scratch else {
            v.take_access(mmio).js()?;
            return cb.call(()).map(|_| ()).map_err(js_err);
        };
        let mut failure = None;
        let mut each = |params: IoParams, _offset: usize| {
            self.copy_element(params, cb, scratch).map_err(|e| {
                failure = Some(e);
                vcpu_kvm::Error::invalid("handler", "the handler failed")
            })
        };
        let result = if mmio {
            v.handle_mmio_at(&mut each)
        } else {
            v.handle_io_at(&mut each)
        };
        match (result, failure) {
            (_, Some(e)) => Err(e),
            (r, None) => r.js(),
        }
    }

    /// One element through the scratch buffer: write data in, call, read data back.
    fn copy_element(&self, params: IoParams, cb: &Callback, (ptr, len): (*mut u8, usize)) -> Result<()> {
        let size = params.size();
        if size > len {
            return Err(invalid("handleIo", "scratch buffer is too small"));
        }
        let access = IoAccess {
            address: params.address,
            size,
            count: 1,
            is_write: matches!(params.operation, IoOperation::Write(_)),
            data_offset: 0,
        };
        self.write_exit_record(&access, 1, 0);
        match params.operation {
            IoOperation::Write(data) => {
                // SAFETY: ptr/len describe the facade's scratch Uint8Array, alive for
                // this call; size <= len.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, size) };
                cb.call(()).map_err(js_err)?;
            }
            IoOperation::Read(data) => {
                // SAFETY: as above; the handler fills the scratch buffer during the call.
                unsafe { std::ptr::write_bytes(ptr, 0, size) };
                cb.call(()).map_err(js_err)?;
                // SAFETY: as above.
                unsafe { std::ptr::copy_nonoverlapping(ptr, data.as_mut_ptr(), size) };
            }
        }
        Ok(())
    }

    fn handle_hypercall(&self, v: &KvmVcpu, cb: &Callback) -> Result<()> {
        let mut record = self.hypercall_record.borrow_mut();
        let record = record
            .as_mut()
            .ok_or_else(|| invalid("handleHypercall", "no hypercall record bound"))?;
        // SAFETY: the facade's own BigUint64Array, held by our reference, never detached;
        // JS touches it only inside `cb`, while we do not.
        let record = unsafe { record.as_mut() };
        if record.len() < REC_LEN {
            return Err(invalid(
                "handleHypercall",
                format!("the record needs {REC_LEN} entries"),
            ));
        }
        let rec = record.as_mut_ptr();
        let mut failure = None;
        let result = v.handle_hypercall(&mut |abi| {
            // SAFETY: `rec` points to REC_LEN or more entries (checked above).
            unsafe {
                rec.add(REC_ID).write(abi.hypercall_id() as u64);
                rec.add(REC_NARGS).write(abi.args().len() as u64);
                for (i, a) in abi.args().iter().enumerate() {
                    rec.add(REC_ARGS + i).write(*a as u64);
                }
                // The defaults, so the handler can read them; none counts as set yet.
                for (i, r) in abi.get_results().iter().enumerate() {
                    rec.add(REC_RESULTS + i).write(*r as u64);
                }
                rec.add(REC_NRESULTS).write(0);
            }
            if let Err(e) = cb.call(()) {
                failure = Some(js_err(e));
                return Err(vcpu_kvm::Error::invalid("handleHypercall", "the handler failed"));
            }
            let mut results = [0usize; HypercallAbi::MAX_RESULTS];
            // SAFETY: as above, after the call.
            let n = unsafe {
                let n = (rec.add(REC_NRESULTS).read() as usize).min(HypercallAbi::MAX_RESULTS);
                for (i, r) in results[..n].iter_mut().enumerate() {
                    *r = rec.add(REC_RESULTS + i).read() as usize;
                }
                n
            };
            abi.set_results(&results[..n]);
            Ok(())
        });
        match (result, failure) {
            (_, Some(e)) => Err(e),
            (r, None) => r.js(),
        }
    }
}

fn js_err(e: napi::Error) -> napi::Error<String> {
    // Keeps the status: a pending exception (the handler's own error) is rethrown by the
    // facade unchanged.
    napi::Error::new(e.status.as_ref().to_string(), e.reason.clone())
}

#[napi]
pub struct NativeVcpu {
    state: Rc<VcpuState>,
}

impl NativeVcpu {
    pub fn new(vcpu: KvmVcpu) -> Self {
        NativeVcpu {
            state: Rc::new(VcpuState {
                vcpu: RefCell::new(Some(vcpu)),
                last: Cell::new(VcpuExit::Intr),
                exit_record: RefCell::new(None),
                hypercall_record: RefCell::new(None),
                scratch: RefCell::new(None),
            }),
        }
    }

    /// Calls `f` with the open vcpu; `ECLOSED` once it (or its VM) is closed.
    pub fn with<R>(&self, op: &str, f: impl FnOnce(&KvmVcpu) -> Result<R>) -> Result<R> {
        self.state.with(op, f)
    }
}

#[napi]
impl NativeVcpu {
    #[napi(getter)]
    pub fn id(&self) -> Result<u32> {
        self.with("id", |v| Ok(v.id() as u32))
    }

    /// Binds the facade's exit and hypercall records to this vcpu and returns its `run`
    /// function: `() => exitCode` (an index in `exitKinds()`, `Intr` when interrupted).
    /// A plain function, so each run costs one call with no receiver to check.
    #[napi(ts_return_type = "() => number")]
    pub fn bind<'env>(
        &self,
        env: &'env Env,
        exit_record: Float64Array,
        hypercall_record: BigUint64Array,
        scratch: Option<Uint8Array>,
    ) -> Result<Function<'env, (), u32>> {
        if exit_record.len() < EXIT_RECORD_LEN || hypercall_record.len() < REC_LEN {
            return Err(invalid("bind", "records are too short"));
        }
        *self.state.exit_record.borrow_mut() = Some(exit_record);
        *self.state.hypercall_record.borrow_mut() = Some(hypercall_record);
        *self.state.scratch.borrow_mut() = scratch;
        let state = self.state.clone();
        env.create_function_from_closure("run", move |ctx| {
            match state.with("run", |v| state.run(v)) {
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
        let exit = self.state.last.get();
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

    /// Handles the pending `Io` exit with `cb` (see `handle_access`). Over views the
    /// facade needs no call: it reads the exit record and the data in place.
    #[napi]
    pub fn handle_io(&self, #[napi(ts_arg_type = "() => void")] cb: Callback) -> Result<()> {
        self.state.with("handleIo", |v| self.state.handle_access(v, false, &cb))
    }

    /// Handles the pending `Mmio` exit, as `handleIo`.
    #[napi]
    pub fn handle_mmio(&self, #[napi(ts_arg_type = "() => void")] cb: Callback) -> Result<()> {
        self.state
            .with("handleMmio", |v| self.state.handle_access(v, true, &cb))
    }

    /// Handles the pending `Hypercall` exit: `cb` reads and writes the hypercall record.
    #[napi]
    pub fn handle_hypercall(&self, #[napi(ts_arg_type = "() => void")] cb: Callback) -> Result<()> {
        self.state
            .with("handleHypercall", |v| self.state.handle_hypercall(v, &cb))
    }

    /// Runs, handling Io/Mmio/Hypercall exits with the callbacks given (per exit over
    /// views, per element through the scratch buffer), and returns the code of the first exit
    /// without one.
    #[napi]
    pub fn run_until(
        &self,
        #[napi(ts_arg_type = "(() => void) | null | undefined")] io: Option<Callback>,
        #[napi(ts_arg_type = "(() => void) | null | undefined")] mmio: Option<Callback>,
        #[napi(ts_arg_type = "(() => void) | null | undefined")] hypercall: Option<Callback>,
    ) -> Result<u32> {
        let state = &self.state;
        state.with("runUntil", |v| loop {
            let code = state.run(v)?;
            match (state.last.get(), &io, &mmio, &hypercall) {
                (VcpuExit::Io, Some(cb), _, _) => state.handle_access(v, false, cb)?,
                (VcpuExit::Mmio, _, Some(cb), _) => state.handle_access(v, true, cb)?,
                (VcpuExit::Hypercall, _, _, Some(cb)) => state.handle_hypercall(v, cb)?,
                _ => return Ok(code),
            }
        })
    }

    /// A zero-copy `ArrayBuffer` over this vcpu's `kvm_run` mapping (the exit data
    /// lives there), or `null` where external buffers are forbidden. Once per vcpu.
    #[napi(ts_return_type = "ArrayBuffer | null")]
    pub fn run_buffer<'env>(&self, env: &'env Env) -> Result<Option<Unknown<'env>>> {
        let (shared, len) = self.with("runBuffer", |v| Ok(v.run_mapping()))?;
        let ptr = shared.base_ptr();
        // SAFETY: the Arc keeps the kvm_run mapping alive until the buffer is collected.
        unsafe { external_arraybuffer(env, ptr, len, Box::new(shared)) }
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
    pub fn enable_raw_capability(&self, cap: u32, args: Vec<BigInt>) -> Result<()> {
        const OP: &str = "enableRawCapability";
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
    pub fn interrupt(&self, vector: u32) -> Result<()> {
        if vector > 255 {
            return Err(invalid("interrupt", format!("vector must be 0..255, got {vector}")));
        }
        self.with("interrupt", |v| v.interrupt(vector).js())
    }

    #[napi]
    pub fn nmi(&self) -> Result<()> {
        self.with("nmi", |v| v.nmi().js())
    }

    #[napi]
    pub fn setup_long_mode(&self) -> Result<()> {
        self.with("setupLongMode", |v| v.setup_long_mode().js())
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.state.vcpu.borrow().as_ref().is_none_or(|v| v.is_closed())
    }

    /// Closes the vcpu and releases its fd (deferred to the end of a `runUntil` when
    /// called from one of its handlers). Idempotent.
    #[napi]
    pub fn close(&self) {
        if let Some(v) = self.state.vcpu.borrow().as_ref() {
            v.close();
        }
        if let Ok(mut slot) = self.state.vcpu.try_borrow_mut() {
            slot.take();
        }
    }
}
