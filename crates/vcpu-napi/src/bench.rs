//! The Rust floor of `bench/`, callable from the benchmark in the same process.

use napi_derive::napi;

use crate::args::uint;
use crate::error::{IntoNapi, Result};
use crate::vcpu::NativeVcpu;

/// Runs `n` exits on `vcpu` in a pure Rust loop; returns nanoseconds.
#[napi]
pub fn bench_rust_exit_loop(vcpu: &NativeVcpu, n: f64) -> Result<f64> {
    let n = uint("bench", "n", n, 1e12)?;
    vcpu.with("bench", |v| Ok(vcpu_kvm::bench::exit_loop(v, n).js()? as f64))
}

/// The Rust start-up sequence, `iterations` times; nanoseconds of each.
#[napi]
pub fn bench_rust_startup(iterations: u32) -> Result<Vec<f64>> {
    Ok(vcpu_kvm::bench::startup(iterations)
        .js()?
        .into_iter()
        .map(|ns| ns as f64)
        .collect())
}
