//! Zero-copy `ArrayBuffer`s over native memory (guest RAM, `kvm_run`).
//!
//! Each buffer's finalizer holds an `Arc` to the mapping, so the memory stays mapped for
//! as long as JS can reach it: a view never dangles. Runtimes that forbid external
//! buffers (Electron's V8 memory cage) get `None`, and the facade copies instead.

use std::collections::HashMap;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use napi::bindgen_prelude::*;
use napi::sys;

/// Keeps the mapping's owner alive; dropped by the finalizer. `token` names this buffer
/// in `live`.
struct Hold(#[allow(dead_code)] Box<dyn Send>, u64);

/// Addresses that back a live (attached) external buffer, with the buffer's token,
/// process-wide (V8's rule is per process).
fn live() -> std::sync::MutexGuard<'static, HashMap<usize, u64>> {
    static LIVE: LazyLock<Mutex<HashMap<usize, u64>>> = LazyLock::new(Mutex::default);
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

unsafe extern "C" fn release(_env: sys::napi_env, data: *mut std::ffi::c_void, hint: *mut std::ffi::c_void) {
    // SAFETY: `hint` is the Box<Hold> leaked in `external_arraybuffer`; V8 calls this
    // finalizer exactly once.
    let hold = unsafe { Box::from_raw(hint.cast::<Hold>()) };
    let mut live = live();
    // The address may back a newer buffer by now (after a detach): leave that one alone.
    if live.get(&(data as usize)) == Some(&hold.1) {
        live.remove(&(data as usize));
    }
    drop(live);
    drop(hold);
}

/// Forgets the buffer over `ptr` after it was detached: its memory may be unmapped and
/// the address reused by a new buffer.
pub fn forget_external(ptr: *const u8) {
    live().remove(&(ptr as usize));
}

/// An `ArrayBuffer` over `[ptr, ptr + len)`, keeping `owner` alive until it is collected,
/// or `None` where external buffers are not allowed.
///
/// # Safety
///
/// `owner` must keep `[ptr, ptr + len)` mapped and writable until it is dropped.
/// `unique`: the memory has one buffer at a time (a second for a `ptr` with a live one is
/// refused); else many buffers may share it (memory restored from a snapshot is one
/// private mapping, which cannot be mapped again at another address).
pub unsafe fn external_arraybuffer(
    env: &Env,
    ptr: *mut u8,
    len: usize,
    owner: Box<dyn Send>,
    unique: bool,
) -> Result<Option<Unknown<'_>>> {
    // Lets the tests run the copying path that Electron takes, on plain Node.
    if std::env::var_os("VCPU_NO_EXTERNAL_BUFFERS").is_some() {
        return Ok(None);
    }
    static TOKENS: AtomicU64 = AtomicU64::new(1);
    let token = TOKENS.fetch_add(1, Ordering::Relaxed);
    if unique {
        let mut live = live();
        if live.contains_key(&(ptr as usize)) {
            return Err(Error::new(
                Status::InvalidArg,
                "this memory already has an ArrayBuffer; reuse it",
            ));
        }
        live.insert(ptr as usize, token);
    }
    let hint = Box::into_raw(Box::new(Hold(owner, token)));
    let mut value = ptr::null_mut();
    // SAFETY: the caller guarantees the range; `release` frees `hint` when V8 is done.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(env.raw(), ptr.cast(), len, Some(release), hint.cast(), &mut value)
    };
    if status != sys::Status::napi_ok && unique {
        live().remove(&(ptr as usize));
    }
    if status == sys::Status::napi_no_external_buffers_allowed {
        // SAFETY: V8 did not take `hint`; we still own it.
        drop(unsafe { Box::from_raw(hint) });
        return Ok(None);
    }
    if status != sys::Status::napi_ok {
        // SAFETY: as above.
        drop(unsafe { Box::from_raw(hint) });
        return Err(Error::new(
            Status::GenericFailure,
            "cannot create an external ArrayBuffer",
        ));
    }
    // SAFETY: `value` is the ArrayBuffer napi just created in this env.
    Ok(Some(unsafe { Unknown::from_raw_unchecked(env.raw(), value) }))
}
