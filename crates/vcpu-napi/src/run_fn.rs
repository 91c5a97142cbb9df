//! The vcpu's `run` as a plain Node-API function, the one call into native code per
//! exit: no receiver to unwrap, no arguments, no result (the exit is in the record).
//! Built on raw Node-API rather than napi-rs' closure trampoline, which allocates and
//! frees on every call — as much as the rest of the exit put together.

use std::ffi::{c_void, CString};
use std::rc::Rc;

use napi::bindgen_prelude::{Env, Unknown};
use napi::sys;

use crate::error::{invalid, Result};
use crate::vcpu::{js_alive, VcpuState};

/// `() => void`: runs the vcpu of `state` until an exit, which the vcpu describes in its
/// exit record; throws a VcpuError-shaped error (`code` = errno name) on failure.
pub(crate) fn create(env: &Env, state: Rc<VcpuState>) -> Result<Unknown<'_>> {
    let data = Rc::into_raw(state) as *mut c_void;
    let mut func = std::ptr::null_mut();
    // SAFETY: plain Node-API calls on the current env; `data` is an Rc leaked just above
    // and reclaimed exactly once, by `release` when the function is collected (or here,
    // if the function could not be made).
    unsafe {
        let made = sys::napi_create_function(env.raw(), c"run".as_ptr(), 3, Some(run), data, &mut func);
        if made != sys::Status::napi_ok
            || sys::napi_add_finalizer(
                env.raw(),
                func,
                data,
                Some(release),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) != sys::Status::napi_ok
        {
            if made == sys::Status::napi_ok {
                // The function exists without a finalizer: keep `data` alive forever
                // rather than let the function point at freed memory.
                return Err(invalid("run", "cannot attach the vcpu to its run function"));
            }
            drop(Rc::from_raw(data as *const VcpuState));
            return Err(invalid("run", "cannot create the run function"));
        }
        Ok(Unknown::from_raw_unchecked(env.raw(), func))
    }
}

unsafe extern "C" fn run(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut data = std::ptr::null_mut();
    // SAFETY: `info` is this call's; we ask only for the function's data pointer.
    let status = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut data,
        )
    };
    if status != sys::Status::napi_ok || data.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `data` is the Rc leaked in `create`, alive until the function (which is
    // running now) is collected.
    let state = unsafe { &*(data as *const VcpuState) };
    let js_env = Env::from_raw(env);
    if let Err(e) = state.with("run", |v| state.run(v, &|| js_alive(&js_env))) {
        let code = CString::new(e.status.as_str()).unwrap_or_default();
        let message = CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
        // SAFETY: valid C strings that outlive the call; the exception is pending when
        // we return.
        unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
    }
    std::ptr::null_mut()
}

unsafe extern "C" fn release(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: the Rc leaked in `create`; Node calls this finalizer once.
    drop(unsafe { Rc::from_raw(data as *const VcpuState) });
}
