//! The async runner: the vcpu runs on a native thread; each exit with a handler is
//! handed to the JS thread, which handles it over the vcpu's exit record while this
//! thread waits; the final exit (or an error) comes last.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use vcpu_kvm::{KvmVcpu, Vcpu, VcpuExit};

use crate::error::{invalid, to_napi, Code, Result};
use crate::vcpu::NativeVcpu;

/// The async runner's callback: `(error, event)`, event = phase * 256 + exit code,
/// phase 0 = handle this exit (return true to go on), 1 = the final exit.
pub type AsyncCallback = ThreadsafeFunction<u32, bool, u32, Code, true>;
/// Added to the final exit's code (see `AsyncCallback`).
pub const PHASE_FINAL: u32 = 256;

/// Runs `once` until it gives an exit or an error; an interruption someone asked for is
/// the exit `Intr` (`intr`: what `once` gives for it), while a stray signal or the
/// liveness tick enters the guest again, unless `alive` says the thread is going away.
pub fn run_to_exit<T>(
    vcpu: &KvmVcpu,
    alive: &dyn Fn() -> bool,
    mut once: impl FnMut() -> vcpu_kvm::Result<T>,
    intr: T,
) -> vcpu_kvm::Result<T> {
    loop {
        if crate::handles::shutting_down() {
            // The process is exiting: the run returns at once, as an interrupted run (so
            // the vcpu's record says `Intr` too).
            vcpu.set_immediate_exit(true);
        }
        match once() {
            Err(e) if e.is_interrupted() && vcpu.interrupted_by_request() => return Ok(intr),
            Err(e) if e.is_interrupted() && alive() => continue,
            other => return other,
        }
    }
}

/// A vcpu thread's last word to JS: the final exit, or the error, whose `code` the
/// facade reads as it is.
pub fn report_final(cb: &AsyncCallback, result: Result<VcpuExit>) {
    let value = result
        .map(|exit| PHASE_FINAL + exit.index() as u32)
        .map_err(|e| napi::Error::new(Code(e.status.clone()), e.reason.clone()));
    cb.call(value, ThreadsafeFunctionCallMode::Blocking);
}

#[napi]
impl NativeVcpu {
    /// Runs on a new native thread until an exit without a handler (or a kick): each
    /// handled exit is delivered to `cb` on the JS thread while the vcpu thread waits for
    /// its answer, then the final exit. See `AsyncCallback` for the protocol.
    #[napi]
    pub fn run_async(
        &self,
        #[napi(ts_arg_type = "(err: Error | null, event: number) => boolean")] cb: AsyncCallback,
        handled: u32,
    ) -> Result<()> {
        let vcpu = self.vcpu_arc("runAsync")?;
        std::thread::Builder::new()
            .name(format!("vcpu-{}", vcpu.id()))
            .spawn(move || run_on_thread(&vcpu, &cb, handled))
            .map_err(|e| invalid("runAsync", format!("cannot start the vcpu thread: {e}")))?;
        Ok(())
    }
}

/// Why the vcpu thread stopped without a final exit: the JS side said so (a handler
/// threw, and the promise is already rejected) or the JS thread is gone.
const STOPPED: &str = "STOPPED";

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
/// `handled` has bit `n` set for each exit code `n` the JS side has a handler for; the
/// handler completes the exit through the vcpu's record before it answers.
fn run_on_thread(vcpu: &KvmVcpu, cb: &AsyncCallback, handled: u32) {
    let answer = Arc::new(AtomicU8::new(WAITING));
    let result: Result<VcpuExit> = (|| loop {
        let exit = run_to_exit(vcpu, &|| true, || vcpu.run(), VcpuExit::Intr).map_err(to_napi)?;
        let code = exit.index() as u32;
        if handled & (1 << code) == 0 {
            return Ok(exit);
        }
        let invoke = || -> Result<()> {
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
        invoke()?;
    })();
    match result {
        Err(e) if e.status == STOPPED => {}
        other => report_final(cb, other),
    }
}
