//! Checks for numbers and bigints that come from JS, before they reach the kernel.

use napi::bindgen_prelude::BigInt;

use crate::error::{invalid, Result};

/// Largest integer a JS number holds exactly.
pub const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A non-negative integer number no larger than `max`.
pub fn uint(op: &str, name: &str, v: f64, max: f64) -> Result<u64> {
    if !v.is_finite() || v.fract() != 0.0 || v < 0.0 || v > max {
        return Err(invalid(
            op,
            format!("{name} must be an integer from 0 to {max}, got {v}"),
        ));
    }
    Ok(v as u64)
}

/// A bigint from 0 to 2^64 - 1.
pub fn u64_of(op: &str, name: &str, v: &BigInt) -> Result<u64> {
    let (negative, value, lossless) = v.get_u64();
    if negative || !lossless {
        return Err(invalid(op, format!("{name} must be a bigint from 0 to 2^64-1")));
    }
    Ok(value)
}

pub fn big(v: u64) -> BigInt {
    BigInt::from(v)
}

/// A 32-bit number from JS that must fit a narrower field (at most `max`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub fn small(op: &str, name: &str, v: u32, max: u32) -> Result<u32> {
    if v > max {
        return Err(invalid(op, format!("{name} must be at most {max}, got {v}")));
    }
    Ok(v)
}

/// Exactly four bigints from 0 to 2^64 - 1 (a capability's arguments).
pub fn four_u64(op: &str, args: &[BigInt]) -> Result<[u64; 4]> {
    if args.len() != 4 {
        return Err(invalid(op, "args must hold exactly 4 bigints"));
    }
    let mut raw = [0u64; 4];
    for (r, a) in raw.iter_mut().zip(args) {
        *r = u64_of(op, "args", a)?;
    }
    Ok(raw)
}
