//! Exit handling over the facade's records, the same for a synchronous call and for
//! the async runner's vcpu thread: only the way JS is reached (`invoke`) differs.

use vcpu_kvm::kvm::IoAccess;
use vcpu_kvm::{HypercallAbi, IoOperation, IoParams, KvmVcpu, Vcpu, VcpuExit};

use crate::error::{invalid, IntoNapi, Result};

/// Exit record (`Float64Array`): address, size, isWrite, count, dataOffset.
pub const EXIT_RECORD_LEN: usize = 5;

/// Hypercall record (`BigUint64Array`): id, argument count, 6 arguments, count of
/// results the handler set, 4 results (the defaults until set), state.
const REC_ID: usize = 0;
const REC_NARGS: usize = 1;
const REC_ARGS: usize = 2;
const REC_NRESULTS: usize = REC_ARGS + HypercallAbi::MAX_ARGS;
const REC_RESULTS: usize = REC_NRESULTS + 1;
const REC_STATE: usize = REC_RESULTS + HypercallAbi::MAX_RESULTS;
pub const HYPERCALL_RECORD_LEN: usize = REC_STATE + 1;

/// Record states: no call; a call waiting for its handler; answered (results to write).
const CALL_NONE: u64 = 0;
const CALL_PENDING: u64 = 1;
const CALL_ANSWERED: u64 = 2;

/// Where the facade's records are: raw pointers into typed arrays the `NativeVcpu`
/// holds references to, so they live as long as it does; the facade never detaches
/// them. JS touches them only inside `invoke`, while this side waits.
#[derive(Clone, Copy)]
pub struct Records {
    pub exit: *mut f64,
    pub hypercall: *mut u64,
    /// The copy buffer, only where JS cannot view `kvm_run` (Electron).
    pub scratch: Option<(*mut u8, usize)>,
}

// SAFETY: the pointers are used by one thread at a time: the JS thread, or the async
// runner's vcpu thread while the JS thread waits for it (see `Records`).
unsafe impl Send for Records {}

impl Records {
    fn write_call(&self, abi: &HypercallAbi) {
        let r = self.hypercall;
        // SAFETY: `r` has HYPERCALL_RECORD_LEN entries (checked at bind; see `Records`).
        unsafe {
            r.add(REC_ID).write(abi.hypercall_id() as u64);
            r.add(REC_NARGS).write(abi.args().len() as u64);
            for (i, a) in abi.args().iter().enumerate() {
                r.add(REC_ARGS + i).write(*a as u64);
            }
            // The defaults, so the handler can read them; none counts as set yet.
            for (i, d) in abi.get_results().iter().enumerate() {
                r.add(REC_RESULTS + i).write(*d as u64);
            }
            r.add(REC_NRESULTS).write(0);
            r.add(REC_STATE).write(CALL_PENDING);
        }
    }

    fn write_access(&self, access: &IoAccess, count: usize, data_offset: usize) {
        let values = [
            access.address as f64,
            access.size as f64,
            access.is_write as u8 as f64,
            count as f64,
            data_offset as f64,
        ];
        for (i, v) in values.into_iter().enumerate() {
            // SAFETY: `exit` has EXIT_RECORD_LEN entries (checked at bind).
            unsafe { self.exit.add(i).write(v) };
        }
    }
}

/// How JS is reached: a synchronous call, or a threadsafe call and a wait.
pub type Invoke<'a> = dyn FnMut() -> Result<()> + 'a;

/// Runs once: first writes back a hypercall the handler answered, then for an
/// `Io`/`Mmio` exit describes the access in the exit record, for a `Hypercall` the call in
/// the hypercall record (the facade's handler answers there, with no native call).
pub fn run(v: &KvmVcpu, rec: &Records) -> vcpu_kvm::Result<VcpuExit> {
    finish_answered(v, rec)?;
    let exit = v.run()?;
    if let Some(access) = v.io_access() {
        rec.write_access(&access, access.count, access.data_offset);
    }
    if exit == VcpuExit::Hypercall {
        rec.write_call(&v.begin_hypercall()?);
    }
    Ok(exit)
}

/// Writes back the results of a hypercall the handler answered, if any.
pub fn finish_answered(v: &KvmVcpu, rec: &Records) -> vcpu_kvm::Result<()> {
    let r = rec.hypercall;
    // SAFETY: `r` has HYPERCALL_RECORD_LEN entries (checked at bind; see `Records`).
    if unsafe { r.add(REC_STATE).read() } != CALL_ANSWERED {
        return Ok(());
    }
    // SAFETY: as above.
    unsafe { r.add(REC_STATE).write(CALL_NONE) };
    let mut abi = v.begin_hypercall()?;
    let mut results = [0usize; HypercallAbi::MAX_RESULTS];
    // SAFETY: as above.
    let n = unsafe {
        let n = (r.add(REC_NRESULTS).read() as usize).min(HypercallAbi::MAX_RESULTS);
        for (i, out) in results[..n].iter_mut().enumerate() {
            *out = r.add(REC_RESULTS + i).read() as usize;
        }
        n
    };
    abi.set_results(&results[..n]);
    v.finish_hypercall(&abi)
}

/// Handles the pending Io/Mmio exit: one `invoke` over views (JS walks the elements the
/// exit record describes), or one per element through the scratch buffer.
pub fn handle_access(v: &KvmVcpu, rec: &Records, mmio: bool, invoke: &mut Invoke) -> Result<()> {
    let Some((ptr, len)) = rec.scratch else {
        v.take_access(mmio).js()?;
        return invoke();
    };
    let mut failure = None;
    let mut each = |params: IoParams, _offset: usize| {
        copy_element(rec, params, (ptr, len), invoke).map_err(|e| {
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

/// One element through the scratch buffer: data in, `invoke`, data back.
fn copy_element(rec: &Records, params: IoParams, (ptr, len): (*mut u8, usize), invoke: &mut Invoke) -> Result<()> {
    let size = params.size();
    if size > len {
        return Err(invalid("handleIo", "scratch buffer is too small"));
    }
    let is_write = matches!(params.operation, IoOperation::Write(_));
    rec.write_access(
        &IoAccess {
            address: params.address,
            size,
            count: 1,
            is_write,
            data_offset: 0,
        },
        1,
        0,
    );
    match params.operation {
        IoOperation::Write(data) => {
            // SAFETY: ptr/len describe the facade's scratch buffer (see `Records`);
            // size <= len.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, size) };
            invoke()
        }
        IoOperation::Read(data) => {
            // SAFETY: as above; the handler fills the scratch buffer inside `invoke`.
            unsafe { std::ptr::write_bytes(ptr, 0, size) };
            invoke()?;
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(ptr, data.as_mut_ptr(), size) };
            Ok(())
        }
    }
}

/// Handles the pending `Hypercall` exit (described in the record by `run`): JS sets the
/// results there in `invoke`, and they go back into the vcpu at once.
pub fn handle_hypercall(v: &KvmVcpu, rec: &Records, invoke: &mut Invoke) -> Result<()> {
    invoke()?;
    // SAFETY: `hypercall` has HYPERCALL_RECORD_LEN entries (checked at bind).
    unsafe { rec.hypercall.add(REC_STATE).write(CALL_ANSWERED) };
    finish_answered(v, rec).js()
}

/// Whether a handler exists for `exit` among (io, mmio, hypercall).
pub fn handled(exit: VcpuExit, io: bool, mmio: bool, hypercall: bool) -> bool {
    matches!(
        (exit, io, mmio, hypercall),
        (VcpuExit::Io, true, _, _) | (VcpuExit::Mmio, _, true, _) | (VcpuExit::Hypercall, _, _, true)
    )
}

/// Handles a handled exit with `invoke`.
pub fn handle(v: &KvmVcpu, rec: &Records, exit: VcpuExit, invoke: &mut Invoke) -> Result<()> {
    match exit {
        VcpuExit::Io => handle_access(v, rec, false, invoke),
        VcpuExit::Mmio => handle_access(v, rec, true, invoke),
        _ => handle_hypercall(v, rec, invoke),
    }
}
