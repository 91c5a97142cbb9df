//! The per-exit calls into native code as plain Node-API functions bound to one vcpu:
//! `run`, and the few that complete an exit (`nextElement`, `completeHypercall`,
//! `completeMsr`). No receiver to unwrap, no arguments, no result: what they need and
//! what they say is in the exit record. Built on raw Node-API rather than napi-rs'
//! class methods or closure trampoline, which allocate, look up the receiver's wrapped
//! pointer and convert arguments on every call — more than the rest of the exit.

use std::ffi::{c_void, CString};
use std::rc::Rc;

use napi::bindgen_prelude::{Env, Object, Unknown};
use napi::sys;
use vcpu_kvm::KvmVcpu;

use crate::error::{invalid, Result};
use crate::vcpu::{js_alive, VcpuState};

const RUN: u8 = 0;
const NEXT_ELEMENT: u8 = 1;
const COMPLETE_HYPERCALL: u8 = 2;
const COMPLETE_MSR: u8 = 3;

/// The functions, by the name the facade reads them under; each its own instance of
/// `call`, so the action is inlined into it.
const FUNCTIONS: [(&str, Callback); 4] = [
    ("run", call::<RUN>),
    ("nextElement", call::<NEXT_ELEMENT>),
    ("completeHypercall", call::<COMPLETE_HYPERCALL>),
    ("completeMsr", call::<COMPLETE_MSR>),
];

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// What the function `ACTION` does with the vcpu.
#[inline(always)]
fn act<const ACTION: u8>(state: &VcpuState, v: &KvmVcpu, env: &Env) -> vcpu_kvm::Result<()> {
    match ACTION {
        RUN => state.run(v, &|| js_alive(env)),
        NEXT_ELEMENT => {
            v.next_element();
            Ok(())
        }
        COMPLETE_HYPERCALL => v.complete_hypercall(),
        _ => complete_msr(v),
    }
}

/// The operation `ACTION` belongs to, for errors.
const fn op<const ACTION: u8>() -> &'static str {
    match ACTION {
        RUN => "run",
        NEXT_ELEMENT => "handleIo",
        COMPLETE_HYPERCALL => "handleHypercall",
        _ => "handleMsr",
    }
}

#[cfg(target_arch = "x86_64")]
fn complete_msr(v: &KvmVcpu) -> vcpu_kvm::Result<()> {
    v.complete_msr()
}

#[cfg(not(target_arch = "x86_64"))]
fn complete_msr(_v: &KvmVcpu) -> vcpu_kvm::Result<()> {
    Err(vcpu_kvm::Error::invalid(
        "handleMsr",
        "handleMsr: MSR exits exist on x86 only",
    ))
}

/// One bound function's data: the vcpu's state.
struct Bound {
    state: Rc<VcpuState>,
}

/// An object `{ run, nextElement, completeHypercall, completeMsr }` of functions bound
/// to the vcpu of `state`. Each throws a VcpuError-shaped error (`code` = errno name).
pub(crate) fn create<'env>(env: &'env Env, state: &Rc<VcpuState>) -> Result<Object<'env>> {
    let mut object = Object::new(env).map_err(|e| invalid("bind", e.reason.clone()))?;
    for (name, callback) in FUNCTIONS {
        let bound = Box::new(Bound { state: state.clone() });
        let func = function(env, name, callback, bound)?;
        object.set(name, func).map_err(|e| invalid("bind", e.reason.clone()))?;
    }
    Ok(object)
}

fn function<'env>(env: &'env Env, name: &str, callback: Callback, bound: Box<Bound>) -> Result<Unknown<'env>> {
    let data = Box::into_raw(bound) as *mut c_void;
    let mut func = std::ptr::null_mut();
    // SAFETY: plain Node-API calls on the current env; `data` is a Box leaked just above
    // and reclaimed exactly once: by `release` when the function is collected, or here
    // if the function could not be made.
    unsafe {
        let made = sys::napi_create_function(
            env.raw(),
            name.as_ptr().cast(),
            name.len() as isize,
            Some(callback),
            data,
            &mut func,
        );
        if made != sys::Status::napi_ok {
            drop(Box::from_raw(data as *mut Bound));
            return Err(invalid("bind", format!("cannot create {name}")));
        }
        let finalized = sys::napi_add_finalizer(
            env.raw(),
            func,
            data,
            Some(release),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        if finalized != sys::Status::napi_ok {
            // The function exists without a finalizer: `data` stays alive forever rather
            // than let the function point at freed memory.
            return Err(invalid("bind", format!("cannot attach the vcpu to {name}")));
        }
        Ok(Unknown::from_raw_unchecked(env.raw(), func))
    }
}

unsafe extern "C" fn call<const ACTION: u8>(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
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
    // SAFETY: `data` is the Box leaked in `function`, alive until the function (which is
    // running now) is collected.
    let bound = unsafe { &*(data as *const Bound) };
    let js_env = Env::from_raw(env);
    let state = &bound.state;
    let closed = || vcpu_kvm::Error::closed(op::<ACTION>(), "vcpu");
    let act = |v: &std::sync::Arc<KvmVcpu>| act::<ACTION>(state, v, &js_env);
    let result = if ACTION == RUN {
        // A run refuses a closed vcpu by itself (ECLOSED, from its lifecycle).
        state.with_vcpu::<false, _, _>(act, closed)
    } else {
        state.with_vcpu::<true, _, _>(act, closed)
    };
    if let Err(e) = result {
        let code = CString::new(e.code_name()).unwrap_or_default();
        let message = CString::new(e.message().replace('\0', " ")).unwrap_or_default();
        // SAFETY: valid C strings that outlive the call; the exception is pending when
        // we return.
        unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
    }
    std::ptr::null_mut()
}

unsafe extern "C" fn release(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: the Box leaked in `function`; Node calls this finalizer once.
    drop(unsafe { Box::from_raw(data as *mut Bound) });
}
