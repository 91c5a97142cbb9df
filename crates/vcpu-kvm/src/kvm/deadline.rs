//! Run deadlines: a vcpu's runs stop at a set time (a sandbox call's timeout) without a
//! timer per vcpu. One process-wide thread keeps the armed deadlines in time order and,
//! when one passes, asks its vcpu for an exit with the `Deadline` wish; every run then
//! returns `EINTR` until the deadline is disarmed, which takes the wish back.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::kick::Want;
use super::run::RunShared;
use super::vcpu::KvmVcpu;
use crate::error::{Error, ErrorCode, Result};

/// The armed deadlines, by time and then by arming order.
struct Queue {
    armed: BTreeMap<(Instant, u64), Weak<RunShared>>,
    next: u64,
    /// When the thread wakes next by itself (`None`: only when notified). A deadline
    /// after that needs no wake-up: arming costs no thread switch in the common case
    /// of calls that end long before their deadline.
    wakes_at: Option<Instant>,
}

struct Deadlines {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Deadlines {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is left consistent by every critical section (they do not panic
        // between changes), so a poisoned lock still guards good data.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread's loop: kick each vcpu whose deadline passed, sleep until the next.
    fn watch(&self) {
        let mut queue = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = queue.armed.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                if let Some(run) = entry.remove().upgrade() {
                    run.kick.kick(Want::Deadline);
                }
            }
            queue.wakes_at = queue.armed.keys().next().map(|k| k.0);
            queue = match queue.wakes_at {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// The deadlines and their thread, started on first use; `None` if the thread could
/// not be started.
fn deadlines() -> Option<&'static Deadlines> {
    static DEADLINES: OnceLock<Option<&'static Deadlines>> = OnceLock::new();
    *DEADLINES.get_or_init(|| {
        let d: &'static Deadlines = Box::leak(Box::new(Deadlines {
            queue: Mutex::new(Queue {
                armed: BTreeMap::new(),
                next: 0,
                wakes_at: None,
            }),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("vcpu-deadlines".into())
            .spawn(|| d.watch())
            .ok()
            .map(|_| d)
    })
}

/// A deadline on one vcpu's runs, from [`KvmVcpu::arm_deadline`]. Dropping it disarms it.
pub struct RunDeadline {
    key: (Instant, u64),
    run: Arc<RunShared>,
}

impl RunDeadline {
    /// Disarms the deadline; true if it had passed (runs since then returned `EINTR`).
    pub fn disarm(self) -> bool {
        self.take_back()
    }

    fn take_back(&self) -> bool {
        if let Some(d) = deadlines() {
            d.lock().armed.remove(&self.key);
        }
        self.run.kick.withdraw(Want::Deadline)
    }
}

impl Drop for RunDeadline {
    fn drop(&mut self) {
        self.take_back();
    }
}

impl KvmVcpu {
    /// Arms a deadline `after` from now: once it passes, the run in progress and every
    /// later one return `EINTR` (the guest is kicked out) until the returned value is
    /// disarmed or dropped. `EAGAIN` if the deadline thread cannot be started.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, Vcpu, VmConfig};
    /// # use std::time::Duration;
    /// # let vm = Kvm::open(None)?.create_vm(VmConfig::default())?;
    /// # vm.add_memory(0, 2 << 20, false, false)?;
    /// # vm.write(0x1000, &[0xeb, 0xfe])?; // jmp $
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.setup_long_mode_at(0x1000, 0x8000)?;
    /// let deadline = vcpu.arm_deadline(Duration::from_millis(50))?;
    /// assert!(vcpu.run().unwrap_err().is_interrupted());
    /// assert!(deadline.disarm());
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn arm_deadline(&self, after: Duration) -> Result<RunDeadline> {
        let d = deadlines().ok_or_else(|| {
            Error::new(
                ErrorCode::Errno(libc::EAGAIN),
                "armDeadline",
                "armDeadline: the deadline thread could not be started",
            )
        })?;
        let at = Instant::now()
            .checked_add(after)
            .ok_or_else(|| Error::invalid("armDeadline", format!("a deadline {after:?} from now is out of range")))?;
        let mut queue = d.lock();
        let key = (at, queue.next);
        queue.next += 1;
        let wake = queue.wakes_at.is_none_or(|w| at < w);
        queue.armed.insert(key, Arc::downgrade(self.run_shared()));
        if wake {
            // The thread recomputes this when it wakes; meanwhile no other arm needs to
            // wake it for a later deadline.
            queue.wakes_at = Some(at);
        }
        drop(queue);
        if wake {
            d.changed.notify_one();
        }
        Ok(RunDeadline {
            key,
            run: self.run_shared().clone(),
        })
    }
}
