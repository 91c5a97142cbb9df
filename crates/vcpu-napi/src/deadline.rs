//! Run deadlines on a vcpu (a sandbox call's timeout): armed and disarmed from JS, kept
//! by `vcpu_kvm`'s deadline thread.

use std::time::Duration;

use napi_derive::napi;

use crate::error::{IntoNapi, Result};
use crate::vcpu::NativeVcpu;

/// The longest deadline: about 24 days, as Node's timers allow.
const MAX_MS: f64 = 2_147_483_647.0;

#[napi]
impl NativeVcpu {
    /// Arms a deadline `ms` from now (replacing one armed before): once it passes, runs
    /// return `Intr` until `disarmDeadline`.
    #[napi]
    pub fn arm_deadline(&self, ms: f64) -> Result<()> {
        const OP: &str = "armDeadline";
        let ms = crate::args::uint(OP, "ms", ms, MAX_MS)?;
        let armed = self.with(OP, |v| v.arm_deadline(Duration::from_millis(ms)).js())?;
        self.deadline.replace(Some(armed));
        Ok(())
    }

    /// Disarms the deadline; true if it had passed.
    #[napi]
    pub fn disarm_deadline(&self) -> bool {
        self.deadline.take().is_some_and(|d| d.disarm())
    }
}
