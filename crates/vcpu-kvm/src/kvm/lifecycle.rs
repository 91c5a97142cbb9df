//! `Lifecycle`: the one writer of a vcpu's lifecycle: idle, running (inside `run()` on
//! one thread), held out of `run()` (a snapshot reads it), in one of its exit handlers
//! (a run from there is refused), closed.
//!
//! `run()` enters through [`Lifecycle::enter`] and leaves through [`Lifecycle::leave`];
//! closing sets a bit that no later entry passes, so once a closed vcpu is seen idle no
//! thread can be inside `KVM_RUN` on it again: that is when its VM's memory may go.

use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

use crate::error::{Error, ErrorCode, Result};

const RUNNING: u8 = 1;
const HELD: u8 = 2;
const CLOSED: u8 = 4;
/// A handler of the vcpu's runs (`KvmVcpu::begin`/`end`): `run()` and holds are refused
/// by the one compare-exchange they make anyway.
const HANDLING: u8 = 8;

#[derive(Default)]
pub(crate) struct Lifecycle {
    state: AtomicU8,
}

impl Lifecycle {
    /// Into `run()` (or held out of it, `held`): refused with `ECLOSED` once closed, and
    /// `EBUSY` while another thread runs or holds the vcpu.
    #[inline]
    pub(crate) fn enter(&self, op: &'static str, id: usize, held: bool) -> Result<()> {
        let to = if held { HELD } else { RUNNING };
        match self.state.compare_exchange(0, to, SeqCst, SeqCst) {
            Ok(_) => Ok(()),
            Err(now) => Err(refusal(op, id, now)),
        }
    }

    /// Out of `run()` (or the hold).
    #[inline]
    pub(crate) fn leave(&self) {
        self.state.fetch_and(!(RUNNING | HELD), SeqCst);
    }

    /// A handler of the vcpu's starts (`true`) or ends (`false`).
    pub(crate) fn set_handling(&self, handling: bool) {
        if handling {
            self.state.fetch_or(HANDLING, SeqCst);
        } else {
            self.state.fetch_and(!HANDLING, SeqCst);
        }
    }

    /// Whether a handler of the vcpu's is running.
    pub(crate) fn is_handling(&self) -> bool {
        self.state.load(SeqCst) & HANDLING != 0
    }

    /// Holds the vcpu out of `run()` whether or not it is closed, for as long as the
    /// guard lives; `None` while a thread is inside.
    pub(crate) fn hold_any(&self) -> Option<LifecycleHold<'_>> {
        let mut now = self.state.load(SeqCst);
        loop {
            if now & (RUNNING | HELD) != 0 {
                return None;
            }
            match self.state.compare_exchange(now, now | HELD, SeqCst, SeqCst) {
                Ok(_) => return Some(LifecycleHold(self)),
                Err(actual) => now = actual,
            }
        }
    }

    /// Marks the vcpu closed; no `run()` starts after this returns.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(SeqCst) & CLOSED != 0
    }

    /// Whether a thread is inside `run()` (or holds the vcpu).
    pub(crate) fn is_busy(&self) -> bool {
        self.state.load(SeqCst) & (RUNNING | HELD) != 0
    }
}

/// See [`Lifecycle::hold_any`].
pub(crate) struct LifecycleHold<'a>(&'a Lifecycle);

impl Drop for LifecycleHold<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cold]
fn refusal(op: &'static str, id: usize, now: u8) -> Error {
    if now & CLOSED != 0 {
        return Error::closed(op, "vcpu");
    }
    let why = if now & HANDLING != 0 {
        "is inside one of its own exit handlers; return from the handler first"
    } else if now & HELD != 0 {
        "is held (a snapshot is reading it)"
    } else {
        "is inside run() on another thread"
    };
    Error::new(ErrorCode::Errno(libc::EBUSY), op, format!("{op}: vcpu {id} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_at_a_time_and_none_after_close() {
        let l = Lifecycle::default();
        l.enter("run", 0, false).unwrap();
        assert_eq!(l.enter("run", 0, false).unwrap_err().errno_value(), Some(libc::EBUSY));
        assert_eq!(
            l.enter("snapshot", 0, true).unwrap_err().errno_value(),
            Some(libc::EBUSY)
        );
        l.close();
        assert!(l.is_busy() && l.is_closed());
        l.leave();
        assert!(!l.is_busy());
        assert_eq!(l.enter("run", 0, false).unwrap_err().code(), crate::ErrorCode::Closed);
    }

    #[test]
    fn no_run_or_hold_from_inside_a_handler() {
        let l = Lifecycle::default();
        l.set_handling(true);
        let err = l.enter("run", 3, false).unwrap_err();
        assert_eq!(err.errno_value(), Some(libc::EBUSY));
        assert!(err.to_string().contains("own exit handlers"), "{err}");
        assert!(l.enter("snapshot", 3, true).is_err());
        // A hold for closing may come meanwhile, and leaving it keeps the handler's bit.
        drop(l.hold_any().expect("not running"));
        assert!(l.is_handling());
        l.set_handling(false);
        l.enter("run", 3, false).unwrap();
    }
}
