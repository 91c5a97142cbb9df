//! `JsCallback`: how a vcpu thread calls back into its JS thread, on Node-API's
//! thread-safe functions, surviving the JS thread going away at any moment.
//!
//! napi-rs' `ThreadsafeFunction` asserts on the status of every call it makes into JS;
//! while a worker is being terminated (or the process exits) those calls fail, and the
//! assertion aborts the whole process. Here a failed or refused call is simply an answer
//! of "stop": the vcpu thread ends, drops its vcpu and the function, and nothing else
//! happens. Every call's data is owned by the call, so a call that never reaches JS (the
//! queue is torn down) still answers, by being dropped.
//!
//! When its JS thread's environment is torn down, Node deletes a thread-safe function
//! whatever threads still hold it, and calls its finalizer first. The handle therefore
//! lives behind a mutex that the finalizer empties: a vcpu thread uses it only while
//! holding the lock and finding it there, so it never touches a deleted function.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::{FromNapiValue, TypeName, ValidateNapiValue};
use napi::sys;

/// The callback's answer to one call.
pub const GO_ON: u8 = 1;
/// The JS side said stop (or could not answer).
pub const STOP: u8 = 2;
const WAITING: u8 = 0;
/// How long the vcpu thread spins for the JS thread's answer before it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// A JS function `(err: Error | null, event: number) => boolean`, callable from any thread.
pub struct JsCallback {
    tsfn: Arc<Handle>,
}

/// The thread-safe function while it exists: `None` once released, or finalized by Node.
struct Handle(Mutex<Option<Tsfn>>);

struct Tsfn(sys::napi_threadsafe_function);

// SAFETY: a thread-safe function handle may be used from any thread (Node-API's
// contract); it is used only under `Handle`'s lock while Node has not finalized it, and
// released once.
unsafe impl Send for Tsfn {}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Option<Tsfn>> {
        // Each update is one assignment: a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Node's finalizer of the function: from now on it no longer exists.
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the `Arc<Handle>` leaked for the finalizer in `from_napi_value`,
    // handed back once.
    let handle = unsafe { Arc::from_raw(data.cast::<Handle>()) };
    handle.lock().take();
}

/// One call: what JS gets, and where its answer goes.
struct Call {
    event: Result<u32, (String, String)>,
    answer: Option<Answer>,
}

/// The slot a waiting vcpu thread reads. Dropped unanswered (the call never ran, or JS
/// failed), it answers STOP, so the vcpu thread never waits forever.
struct Answer {
    slot: Arc<AtomicU8>,
    waiter: std::thread::Thread,
    sent: bool,
}

impl Answer {
    fn send(mut self, answer: u8) {
        self.sent = true;
        self.slot.store(answer, Ordering::Release);
        self.waiter.unpark();
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.sent {
            self.slot.store(STOP, Ordering::Release);
            self.waiter.unpark();
        }
    }
}

impl JsCallback {
    /// Calls JS with `event` and waits for its answer: `GO_ON` if it returned true.
    pub fn ask(&self, event: u32) -> u8 {
        let slot = Arc::new(AtomicU8::new(WAITING));
        let answer = Answer {
            slot: slot.clone(),
            waiter: std::thread::current(),
            sent: false,
        };
        self.send(Call {
            event: Ok(event),
            answer: Some(answer),
        });
        // Spins briefly, then sleeps until the answer unparks it (park may also return
        // spuriously): on an idle host a sleeping thread takes tens of µs to wake.
        let started = std::time::Instant::now();
        loop {
            match slot.load(Ordering::Acquire) {
                WAITING if started.elapsed() < SPIN => std::hint::spin_loop(),
                WAITING => std::thread::park(),
                answer => return answer,
            }
        }
    }

    /// Lets the JS thread's event loop end while the function exists (a device that is
    /// only waiting does not keep a process alive). On the JS thread.
    pub fn unref(&self, env: &napi::Env) {
        if let Some(Tsfn(raw)) = *self.tsfn.lock() {
            // SAFETY: on the JS thread that owns the function, which exists while the lock
            // shows it.
            unsafe { sys::napi_unref_threadsafe_function(env.raw(), raw) };
        }
    }

    /// Tells JS `event` (or the error `code`, `message`) without waiting.
    pub fn tell(&self, event: Result<u32, (String, String)>) {
        self.send(Call { event, answer: None });
    }

    fn send(&self, call: Call) {
        let tsfn = self.tsfn.lock();
        let Some(Tsfn(raw)) = *tsfn else {
            // Finalized: the call is dropped, which answers STOP.
            return;
        };
        let data = Box::into_raw(Box::new(call));
        // SAFETY: the function exists while the lock shows it; on success Node-API hands
        // `data` to `call_js` exactly once (with a null env if torn down first).
        let status =
            unsafe { sys::napi_call_threadsafe_function(raw, data.cast(), sys::ThreadsafeFunctionCallMode::blocking) };
        if status != sys::Status::napi_ok {
            // Refused (the JS thread is going away): the call is ours again; dropping it
            // answers STOP.
            // SAFETY: `data` came from Box::into_raw above and was not taken.
            drop(unsafe { Box::from_raw(data) });
        }
    }
}

impl Drop for JsCallback {
    fn drop(&mut self) {
        if let Some(Tsfn(raw)) = self.tsfn.lock().take() {
            // SAFETY: the function exists while the lock shows it; released once (taken).
            unsafe { sys::napi_release_threadsafe_function(raw, sys::ThreadsafeFunctionReleaseMode::release) };
        }
    }
}

/// Runs on the JS thread for each call (or with a null env when the function is torn
/// down with calls still queued). Never asserts: any failure answers STOP.
unsafe extern "C" fn call_js(env: sys::napi_env, js_callback: sys::napi_value, _: *mut c_void, data: *mut c_void) {
    // SAFETY: `data` is a `Box<Call>` leaked by `send`, handed to us once.
    let call = unsafe { Box::from_raw(data.cast::<Call>()) };
    if env.is_null() || js_callback.is_null() {
        return;
    }
    // SAFETY: plain Node-API calls on the env we were called with, on its thread.
    let go_on = unsafe { invoke(env, js_callback, &call.event) };
    if let Some(answer) = call.answer {
        answer.send(if go_on == Some(true) { GO_ON } else { STOP });
    }
}

/// `js_callback(err, event)`; its boolean result, or `None` if anything failed.
///
/// # Safety
///
/// `env` is the current JS thread's env and `js_callback` a value of it.
unsafe fn invoke(
    env: sys::napi_env,
    js_callback: sys::napi_value,
    event: &Result<u32, (String, String)>,
) -> Option<bool> {
    let ok = |status| (status == sys::Status::napi_ok).then_some(());
    let mut args = [std::ptr::null_mut(); 2];
    // SAFETY (all calls): the caller's contract; out-pointers are locals.
    unsafe {
        match event {
            Ok(event) => {
                ok(sys::napi_get_null(env, &mut args[0]))?;
                ok(sys::napi_create_uint32(env, *event, &mut args[1]))?;
            }
            Err((code, message)) => {
                let string = |text: &str| {
                    let mut value = std::ptr::null_mut();
                    ok(sys::napi_create_string_utf8(
                        env,
                        text.as_ptr().cast(),
                        text.len() as isize,
                        &mut value,
                    ))
                    .map(|()| value)
                };
                ok(sys::napi_create_error(
                    env,
                    string(code)?,
                    string(message)?,
                    &mut args[0],
                ))?;
                ok(sys::napi_get_undefined(env, &mut args[1]))?;
            }
        }
        let mut recv = std::ptr::null_mut();
        ok(sys::napi_get_undefined(env, &mut recv))?;
        let mut result = std::ptr::null_mut();
        let status = sys::napi_call_function(env, recv, js_callback, 2, args.as_ptr(), &mut result);
        if status != sys::Status::napi_ok {
            // The JS thread is terminating, or the callback threw: nothing to report to.
            let mut exception = std::ptr::null_mut();
            let _ = sys::napi_get_and_clear_last_exception(env, &mut exception);
            return None;
        }
        let mut value = false;
        ok(sys::napi_get_value_bool(env, result, &mut value))?;
        Some(value)
    }
}

impl FromNapiValue for JsCallback {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut name = std::ptr::null_mut();
        let mut tsfn = std::ptr::null_mut();
        let handle = Arc::new(Handle(Mutex::new(None)));
        let for_finalizer = Arc::into_raw(handle.clone()).cast_mut().cast::<c_void>();
        // SAFETY: called by napi-rs on the JS thread with this env and argument; queue
        // size 0 means unbounded, so a blocking call never blocks. The finalizer gets its
        // own reference to the handle.
        let status = unsafe {
            sys::napi_create_string_utf8(env, c"vcpu".as_ptr(), 4, &mut name);
            sys::napi_create_threadsafe_function(
                env,
                value,
                std::ptr::null_mut(),
                name,
                0,
                1,
                for_finalizer,
                Some(finalize),
                std::ptr::null_mut(),
                Some(call_js),
                &mut tsfn,
            )
        };
        if status != sys::Status::napi_ok {
            // SAFETY: not created, so the finalizer will never take its reference back.
            drop(unsafe { Arc::from_raw(for_finalizer.cast::<Handle>()) });
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "expected a function (err, event) => boolean",
            ));
        }
        *handle.lock() = Some(Tsfn(tsfn));
        Ok(JsCallback { tsfn: handle })
    }
}

impl TypeName for JsCallback {
    fn type_name() -> &'static str {
        "Function"
    }

    fn value_type() -> napi::ValueType {
        napi::ValueType::Function
    }
}

impl ValidateNapiValue for JsCallback {}
