//! `KickState`: the one writer of `kvm_run.immediate_exit` and of the thread a kick
//! signals.
//!
//! Four parties may want a vcpu out of the guest: its user (`set_immediate_exit`), a kick
//! from any thread or a signal handler (consumed by the run it interrupts), a run
//! hook such as a debugger (`run()` hands the interruption to it), and a run deadline
//! that passed (until disarmed); process exit stops every vcpu for good. Each has one bit in
//! `wants`; `immediate_exit` is 1 exactly while some bit is set. Setting a bit stores 1;
//! clearing the last one stores 0 and then looks again, so a bit set meanwhile always
//! leaves 1 behind (all SeqCst): no interleaving loses a kick.
//!
//! The thread: `run()` publishes the kernel thread id it runs on before `KVM_RUN` and
//! withdraws it after. A kicker stores `immediate_exit` first and reads the id second, so
//! either the run sees the 1 on entry or the kicker sees the thread and signals it.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering::SeqCst};

use vmm_sys_util::signal::SIGRTMIN;

/// Who wants the vcpu out of the guest: one bit each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Want {
    /// The user's `set_immediate_exit(true)`, until `false`.
    User = 1,
    /// A kick: consumed by the run it interrupts.
    Kick = 2,
    /// A run hook's kick (a debugger's): `run()` hands it to the hook, never to its
    /// caller.
    Hook = 4,
    /// For good (the process is exiting): never taken back.
    Stop = 8,
    /// A run deadline that passed: every run is interrupted until it is disarmed.
    Deadline = 16,
}

/// Offset from `SIGRTMIN` of the signal that wakes vcpu threads. Neither Node, libuv nor
/// V8 uses real-time signals.
pub const KICK_SIGNAL_OFFSET: i32 = 0;

/// The wake-up signal's number.
pub fn kick_signal() -> i32 {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

pub(crate) struct KickState {
    /// `kvm_run.immediate_exit` inside the vcpu's mapping, which outlives this value
    /// (both belong to one `RunShared`, which unmaps after dropping its fields' users).
    immediate_exit: NonNull<AtomicU8>,
    wants: AtomicU8,
    /// The kernel thread id inside `run()`, 0 when none is.
    tid: AtomicI32,
    /// Counts entries into `KVM_RUN`, so a watcher can tell one long run from many.
    runs: AtomicU64,
}

// SAFETY: `immediate_exit` points into a process-wide shared mapping that lives as long
// as this value, and is only accessed atomically; the rest are atomics.
unsafe impl Send for KickState {}
// SAFETY: as above.
unsafe impl Sync for KickState {}

thread_local! {
    /// This thread's kernel id, asked of the kernel once per thread: a thread-local dies
    /// with its thread, so a new thread (even one glibc gives a reused `pthread_t`) asks
    /// again.
    static TID: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The thread that calls `run()`: its kernel id, which a kick signals. `!Send`, so it
/// always names the thread that holds it. A caller that runs a vcpu from one thread over
/// and over (the binding's JS thread) takes it once and saves asking the thread-local on
/// every run.
#[derive(Clone, Copy, Debug)]
pub struct VcpuThread {
    tid: i32,
    _this_thread_only: PhantomData<*const ()>,
}

impl VcpuThread {
    /// The calling thread.
    #[inline]
    pub fn current() -> VcpuThread {
        let tid = TID.with(|t| match t.get() {
            0 => {
                // SAFETY: gettid has no arguments and cannot fail.
                let tid = unsafe { libc::syscall(libc::SYS_gettid) as i32 };
                t.set(tid);
                tid
            }
            tid => tid,
        });
        VcpuThread {
            tid,
            _this_thread_only: PhantomData,
        }
    }
}

impl KickState {
    /// # Safety
    ///
    /// `immediate_exit` must point at `kvm_run.immediate_exit` of a mapping that stays
    /// valid for as long as the returned value.
    pub(crate) unsafe fn new(immediate_exit: NonNull<AtomicU8>) -> Self {
        KickState {
            immediate_exit,
            wants: AtomicU8::new(0),
            tid: AtomicI32::new(0),
            runs: AtomicU64::new(0),
        }
    }

    fn immediate_exit(&self) -> &AtomicU8 {
        // SAFETY: see the field; AtomicU8 has u8's size and alignment, and the kernel
        // reads the byte only on KVM_RUN entry.
        unsafe { self.immediate_exit.as_ref() }
    }

    /// Asks for an exit on behalf of `who`.
    pub(crate) fn request(&self, who: Want) {
        self.wants.fetch_or(who as u8, SeqCst);
        self.immediate_exit().store(1, SeqCst);
    }

    /// Withdraws `who`'s wish; true if it had one.
    pub(crate) fn withdraw(&self, who: Want) -> bool {
        let before = self.wants.fetch_and(!(who as u8), SeqCst);
        if before & !(who as u8) == 0 {
            self.immediate_exit().store(0, SeqCst);
            // A wish made between the fetch_and and the store stored its 1 before ours.
            if self.wants.load(SeqCst) != 0 {
                self.immediate_exit().store(1, SeqCst);
            }
        }
        before & who as u8 != 0
    }

    /// Whether `who` wants the vcpu out now.
    #[inline]
    pub(crate) fn wanted_by(&self, who: Want) -> bool {
        self.wants.load(SeqCst) & who as u8 != 0
    }

    /// A kick: an exit is asked for and the thread inside the guest, if any, is signalled.
    pub(crate) fn kick(&self, who: Want) {
        self.request(who);
        self.wake();
    }

    /// Signals the thread inside `run()`, if any, without asking for an exit.
    pub(crate) fn wake(&self) {
        let tid = self.tid.load(SeqCst);
        if tid != 0 {
            // SAFETY: tgkill with our own pid only reaches threads of this process; at worst
            // a thread that just left KVM_RUN gets one no-op signal.
            unsafe {
                libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, kick_signal());
            }
        }
    }

    /// On the way into `KVM_RUN`: publishes the calling thread.
    #[inline]
    pub(crate) fn publish_thread(&self, thread: VcpuThread) {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tid.store(thread.tid, SeqCst);
    }

    /// On the way out: no thread to signal any more.
    #[inline]
    pub(crate) fn withdraw_thread(&self) {
        self.tid.store(0, SeqCst);
    }

    /// Whether a thread is inside `KVM_RUN` now.
    pub(crate) fn thread_inside(&self) -> bool {
        self.tid.load(SeqCst) != 0
    }

    /// The number of the run in progress, if a thread is inside one.
    pub(crate) fn current_run(&self) -> Option<u64> {
        self.thread_inside()
            .then(|| self.runs.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// After a run that returned `EINTR`: whether an exit was asked for (the user's wish,
    /// or a kick, which this consumes) rather than a stray signal.
    pub(crate) fn take_interruption(&self) -> bool {
        self.withdraw(Want::Kick)
            || self.wanted_by(Want::User)
            || self.wanted_by(Want::Stop)
            || self.wanted_by(Want::Deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(byte: &AtomicU8) -> KickState {
        // SAFETY: `byte` outlives the state in each test.
        unsafe { KickState::new(NonNull::from(byte)) }
    }

    #[test]
    fn immediate_exit_is_one_exactly_while_someone_wants_it() {
        let byte = AtomicU8::new(0);
        let k = state(&byte);
        k.request(Want::User);
        k.request(Want::Hook);
        assert!(k.withdraw(Want::User));
        assert_eq!(byte.load(SeqCst), 1, "the hook still wants it");
        assert!(!k.withdraw(Want::Kick));
        assert!(k.withdraw(Want::Hook));
        assert_eq!(byte.load(SeqCst), 0);
    }

    #[test]
    fn a_kick_racing_a_withdrawal_is_never_lost() {
        let byte = AtomicU8::new(0);
        let k = state(&byte);
        for _ in 0..20_000 {
            k.request(Want::User);
            std::thread::scope(|s| {
                s.spawn(|| k.withdraw(Want::User));
                s.spawn(|| k.request(Want::Kick));
            });
            assert_eq!(byte.load(SeqCst), 1, "a kick is pending");
            assert!(k.take_interruption());
            assert_eq!(byte.load(SeqCst), 0);
        }
    }

    #[test]
    fn a_new_thread_publishes_its_own_id() {
        let ids: Vec<i32> = (0..50)
            .map(|_| std::thread::spawn(|| VcpuThread::current().tid).join().unwrap())
            .collect();
        for id in &ids {
            assert!(*id > 0);
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        // Kernel ids of successive short-lived threads may repeat only after wrap-around.
        assert_eq!(unique.len(), ids.len());
    }
}
