//! The Rust floor of `bench/`, callable from the benchmark in the same process.

use napi_derive::napi;

use crate::args::uint;
use crate::error::{IntoNapi, Result};
use crate::vcpu::NativeVcpu;

/// Runs `n` exits on `vcpu` in a pure Rust loop; returns nanoseconds.
#[napi]
pub fn bench_rust_exit_loop(vcpu: &NativeVcpu, n: f64) -> Result<f64> {
    let n = uint("bench", "n", n, 1e12)?;
    vcpu.with("bench", |v| Ok(crate::bench_floor::exit_loop(v, n).js()? as f64))
}

/// The Rust start-up sequence, `iterations` times; nanoseconds of each.
#[napi]
pub fn bench_rust_startup(iterations: u32) -> Result<Vec<f64>> {
    Ok(crate::bench_floor::startup(iterations)
        .js()?
        .into_iter()
        .map(|ns| ns as f64)
        .collect())
}

/// Callgrind's client request `TOGGLE_COLLECT` (valgrind's callgrind.h): counting starts
/// or stops here, so `bench/callgrind.js` counts only the exits between two calls.
/// Outside valgrind the instruction sequence does nothing.
#[napi]
pub fn bench_callgrind_toggle() {
    const TOGGLE_COLLECT: u64 = ((b'C' as u64) << 24 | (b'T' as u64) << 16) + 2;
    let args: [u64; 6] = [TOGGLE_COLLECT, 0, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: valgrind's "special instruction preamble": four rotations of RDI that
    // add up to 128 bits (RDI unchanged) and `xchg rbx, rbx` (a no-op); under valgrind
    // it reads the request from `args` through RAX and answers in RDX. Nothing else is
    // touched.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!(
            "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51", "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            options(nostack, preserves_flags),
        );
    }
    let _ = result;
}
