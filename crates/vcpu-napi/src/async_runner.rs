//! The async runner: the vcpu runs on a native thread; each exit with a handler is
//! handed to the JS thread, which handles it over the vcpu's exit record while this
//! thread waits; the final exit (or an error) comes last.

use napi_derive::napi;
use vcpu_kvm::{KvmVcpu, Vcpu, VcpuExit};

use crate::error::{invalid, to_napi, Result};
use crate::js_callback::{JsCallback, GO_ON};
use crate::vcpu::NativeVcpu;

/// Added to the final exit's code: the callback gets `(error, event)`, event = phase *
/// 256 + exit code, phase 0 = handle this exit (return true to go on), 1 = the final exit.
pub const PHASE_FINAL: u32 = 256;

/// [`KvmVcpu::run_until_settled`] as the binding runs a vcpu: `intr` for a requested
/// interruption, a stray one retried while `alive` says the JS thread is still there.
/// (When the process exits, `handles::shutdown` stops every vcpu for good: each run then
/// returns at once, as an interrupted run.)
pub fn run_to_exit<T>(
    vcpu: &KvmVcpu,
    alive: &dyn Fn() -> bool,
    once: impl FnMut() -> vcpu_kvm::Result<T>,
    intr: T,
) -> vcpu_kvm::Result<T> {
    vcpu.run_until_settled(alive, once, intr)
}

/// A vcpu thread's last word to JS: the final exit, or the error, whose `code` the
/// facade reads as it is.
pub fn report_final(cb: &JsCallback, result: Result<VcpuExit>) {
    cb.tell(
        result
            .map(|exit| PHASE_FINAL + exit.index() as u32)
            .map_err(|e| (e.status.clone(), e.reason.clone())),
    );
}

#[napi]
impl NativeVcpu {
    /// Runs on a new native thread until an exit without a handler (or a kick): each
    /// handled exit is delivered to `cb` on the JS thread while the vcpu thread waits for
    /// its answer, then the final exit. See `PHASE_FINAL` for the protocol.
    #[napi]
    pub fn run_async(
        &self,
        #[napi(ts_arg_type = "(err: Error | null, event: number) => boolean")] cb: JsCallback,
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

/// The async runner's vcpu thread: runs, hands each handled exit to the JS thread and
/// waits for it, and reports the final exit (or an error) last. `handled` has bit `n`
/// set for each exit code `n` the JS side has a handler for; the handler completes the
/// exit through the vcpu's record before it answers. Stopped by its JS side (a handler
/// threw and the promise is settled already, or the JS thread is gone), it just ends.
fn run_on_thread(vcpu: &KvmVcpu, cb: &JsCallback, handled: u32) {
    let result = loop {
        let exit = match run_to_exit(vcpu, &|| true, || vcpu.run(), VcpuExit::Intr) {
            Ok(exit) => exit,
            Err(e) => break Err(to_napi(e)),
        };
        let code = exit.index() as u32;
        if handled & (1 << code) == 0 {
            break Ok(exit);
        }
        if cb.ask(code) != GO_ON {
            return;
        }
    };
    report_final(cb, result);
}
