//! `NativeVcpu`: run, exit handling through JS callbacks, signal handles.
//!
//! The hot path builds no JS objects: `run()` returns a small exit code, `handleIo` and
//! `handleMmio` call the facade's trampoline with four numbers and the data stays in
//! `kvm_run`, viewed from JS through one external `ArrayBuffer` (or copied through a
//! scratch buffer where external buffers are forbidden).

use std::cell::{Cell, RefCell};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::{HypercallAbi, IoOperation, IoParams, KvmVcpu, Vcpu, VcpuExit};

use crate::args::{big, u64_of};
use crate::error::{closed, invalid, to_napi, IntoNapi, Result};
use crate::external::external_arraybuffer;

pub const EXIT_KINDS: [&str; 20] = VcpuExit::KINDS;
const INTR: u32 = 5;

/// Called per I/O element: (address, size, isWrite, dataOffset).
pub type IoCallback<'a> = Function<'a, FnArgs<(f64, u32, bool, u32)>, Unknown<'a>>;
/// Called per hypercall; arguments and results travel in the record.
pub type HypercallCallback<'a> = Function<'a, (), Unknown<'a>>;

/// Layout of the hypercall record (a `BigUint64Array` the facade owns): id, argument
/// count, 6 arguments, count of results the handler set, 4 results (defaults first).
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

#[napi]
pub struct NativeVcpu {
    vcpu: RefCell<Option<KvmVcpu>>,
    last: Cell<VcpuExit>,
}

impl NativeVcpu {
    pub fn new(vcpu: KvmVcpu) -> Self {
        NativeVcpu {
            vcpu: RefCell::new(Some(vcpu)),
            last: Cell::new(VcpuExit::Intr),
        }
    }

    /// Calls `f` with the open vcpu; `ECLOSED` once it (or its VM) is closed.
    pub fn with<R>(&self, op: &str, f: impl FnOnce(&KvmVcpu) -> Result<R>) -> Result<R> {
        let guard = self.vcpu.borrow();
        match guard.as_ref() {
            Some(v) if !v.is_closed() => f(v),
            _ => Err(closed(op, "vcpu")),
        }
    }

    fn record_exit(&self, result: vcpu_kvm::Result<VcpuExit>) -> Result<u32> {
        match result {
            Ok(exit) => {
                self.last.set(exit);
                Ok(exit.index() as u32)
            }
            Err(e) if e.is_interrupted() => {
                self.last.set(VcpuExit::Intr);
                Ok(INTR)
            }
            Err(e) => Err(to_napi(e)),
        }
    }
}

/// Calls the JS trampoline for one I/O element, through `scratch` when given.
fn io_element(cb: &IoCallback, params: IoParams, offset: usize, scratch: Option<(*mut u8, usize)>) -> Result<()> {
    let address = params.address as f64;
    let size = params.size();
    match (params.operation, scratch) {
        (IoOperation::Write(data), Some((ptr, len))) if size <= len => {
            // SAFETY: ptr/len describe the facade's scratch Uint8Array, alive for this call.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, size) };
            cb.call((address, size as u32, true, 0).into()).map_err(js_err)?;
        }
        (IoOperation::Read(data), Some((ptr, len))) if size <= len => {
            // SAFETY: as above; the handler filled the scratch buffer during the call.
            unsafe { std::ptr::write_bytes(ptr, 0, size) };
            cb.call((address, size as u32, false, 0).into()).map_err(js_err)?;
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(ptr, data.as_mut_ptr(), size) };
        }
        (_, Some(_)) => return Err(invalid("handleIo", "scratch buffer is too small")),
        (operation, None) => {
            let is_write = matches!(operation, IoOperation::Write(_));
            cb.call((address, size as u32, is_write, offset as u32).into())
                .map_err(js_err)?;
        }
    }
    Ok(())
}

fn js_err(e: napi::Error) -> napi::Error<String> {
    // Keeps the status (PendingException lets the handler's own error propagate).
    napi::Error::new(e.status.as_ref().to_string(), e.reason.clone())
}

fn scratch_of(scratch: Option<&mut [u8]>) -> Option<(*mut u8, usize)> {
    scratch.map(|s| (s.as_mut_ptr(), s.len()))
}

fn handle_io(vcpu: &KvmVcpu, cb: &IoCallback, scratch: Option<(*mut u8, usize)>) -> Result<()> {
    let mut failure = None;
    vcpu.handle_io_at(&mut |params, offset| {
        // After a handler throws, the remaining elements are skipped.
        if failure.is_none() {
            failure = io_element(cb, params, offset, scratch).err();
        }
    })
    .js()?;
    failure.map_or(Ok(()), Err)
}

fn handle_mmio(vcpu: &KvmVcpu, cb: &IoCallback, scratch: Option<(*mut u8, usize)>) -> Result<()> {
    let mut failure = None;
    let result = vcpu.handle_mmio_at(&mut |params, offset| {
        io_element(cb, params, offset, scratch).map_err(|e| {
            failure = Some(e);
            vcpu_kvm::Error::invalid("handleMmio", "handler failed")
        })
    });
    match (result, failure) {
        (_, Some(e)) => Err(e),
        (r, None) => r.js(),
    }
}

fn handle_hypercall(vcpu: &KvmVcpu, cb: &HypercallCallback, record: &mut [u64]) -> Result<()> {
    if record.len() < REC_LEN {
        return Err(invalid("handleHypercall", format!("record needs {REC_LEN} entries")));
    }
    let rec = record.as_mut_ptr();
    let mut failure = None;
    let result = vcpu.handle_hypercall(&mut |abi| {
        // SAFETY: `rec` points to the facade's BigUint64Array of REC_LEN or more entries,
        // alive for this call; the JS handler writes it only during `cb.call`.
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
            return Err(vcpu_kvm::Error::invalid("handleHypercall", "handler failed"));
        }
        // SAFETY: as above, after the call.
        let results: Vec<usize> = unsafe {
            let n = (rec.add(REC_NRESULTS).read() as usize).min(HypercallAbi::MAX_RESULTS);
            (0..n).map(|i| rec.add(REC_RESULTS + i).read() as usize).collect()
        };
        abi.set_results(&results);
        Ok(())
    });
    match (result, failure) {
        (_, Some(e)) => Err(e),
        (r, None) => r.js(),
    }
}

#[napi]
impl NativeVcpu {
    #[napi(getter)]
    pub fn id(&self) -> Result<u32> {
        self.with("id", |v| Ok(v.id() as u32))
    }

    /// Runs until the next exit; returns its index in `exitKinds()` (`Intr` when
    /// interrupted).
    #[napi]
    pub fn run(&self) -> Result<u32> {
        self.with("run", |v| self.record_exit(v.run()))
    }

    /// The last exit with its payload.
    #[napi]
    pub fn last_exit(&self) -> ExitDetail {
        let exit = self.last.get();
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

    #[napi]
    pub fn handle_io(
        &self,
        #[napi(ts_arg_type = "(address: number, size: number, isWrite: boolean, dataOffset: number) => void")]
        cb: IoCallback,
        scratch: Option<&mut [u8]>,
    ) -> Result<()> {
        let scratch = scratch_of(scratch);
        self.with("handleIo", |v| handle_io(v, &cb, scratch))
    }

    #[napi]
    pub fn handle_mmio(
        &self,
        #[napi(ts_arg_type = "(address: number, size: number, isWrite: boolean, dataOffset: number) => void")]
        cb: IoCallback,
        scratch: Option<&mut [u8]>,
    ) -> Result<()> {
        let scratch = scratch_of(scratch);
        self.with("handleMmio", |v| handle_mmio(v, &cb, scratch))
    }

    #[napi]
    pub fn handle_hypercall(
        &self,
        #[napi(ts_arg_type = "() => void")] cb: HypercallCallback,
        mut record: BigUint64ArraySlice,
    ) -> Result<()> {
        // SAFETY: the facade owns this array and touches it only inside `cb`, which the
        // handler below calls while it is not holding the slice.
        let record = unsafe { record.as_mut() };
        self.with("handleHypercall", |v| handle_hypercall(v, &cb, record))
    }

    /// Runs, handling Io/Mmio/Hypercall exits with the callbacks given, and returns the
    /// code of the first exit without one.
    #[napi]
    pub fn run_until(
        &self,
        #[napi(
            ts_arg_type = "(((address: number, size: number, isWrite: boolean, dataOffset: number) => void) | null) | undefined"
        )]
        io: Option<IoCallback>,
        #[napi(
            ts_arg_type = "(((address: number, size: number, isWrite: boolean, dataOffset: number) => void) | null) | undefined"
        )]
        mmio: Option<IoCallback>,
        #[napi(ts_arg_type = "(() => void) | null | undefined")] hypercall: Option<HypercallCallback>,
        scratch: Option<&mut [u8]>,
        record: Option<BigUint64ArraySlice>,
    ) -> Result<u32> {
        let scratch = scratch_of(scratch);
        // SAFETY: as in handle_hypercall.
        let mut record = record;
        let mut record = record.as_mut().map(|r| unsafe { r.as_mut() });
        self.with("runUntil", |v| loop {
            let code = self.record_exit(v.run())?;
            match (self.last.get(), &io, &mmio, &hypercall, record.as_deref_mut()) {
                (VcpuExit::Io, Some(cb), _, _, _) => handle_io(v, cb, scratch)?,
                (VcpuExit::Mmio, _, Some(cb), _, _) => handle_mmio(v, cb, scratch)?,
                (VcpuExit::Hypercall, _, _, Some(cb), Some(rec)) => handle_hypercall(v, cb, rec)?,
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
        self.vcpu.borrow().as_ref().is_none_or(|v| v.is_closed())
    }

    /// Closes the vcpu and releases its fd (deferred to the end of a `runUntil` when
    /// called from one of its handlers). Idempotent.
    #[napi]
    pub fn close(&self) {
        if let Some(v) = self.vcpu.borrow().as_ref() {
            v.close();
        }
        if let Ok(mut slot) = self.vcpu.try_borrow_mut() {
            slot.take();
        }
    }
}
