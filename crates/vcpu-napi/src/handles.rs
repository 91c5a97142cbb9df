//! What only Node needs of vcpu signal handles: a process-wide registry, so a worker
//! can kick a vcpu by number (JS objects cannot cross threads, numbers can); the
//! liveness tick, which wakes a thread that stays inside the guest so it can see that
//! its worker is being terminated; and shutdown at process exit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, Once};

use vcpu_kvm::{VcpuSignalHandle, WeakVcpuSignalHandle};

/// How often a vcpu that stays inside the guest is woken (no exit is asked for), so its
/// thread can check that it is still wanted and otherwise run again.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Set once the process is exiting: every run returns `Intr` at once from then on.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

fn registry() -> MutexGuard<'static, HashMap<u64, WeakVcpuSignalHandle>> {
    static REGISTRY: LazyLock<Mutex<HashMap<u64, WeakVcpuSignalHandle>>> = LazyLock::new(Mutex::default);
    // Each update is one insert or remove: a poisoned lock is still consistent.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a vcpu's handle (for `kick`, the tick and `shutdown`); its number.
pub fn register(handle: &VcpuSignalHandle) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static TICKER: Once = Once::new();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut all = registry();
    all.retain(|_, h| h.upgrade().is_some());
    all.insert(id, handle.downgrade());
    if SHUTDOWN.load(Ordering::Acquire) {
        // Made while the process exits: stopped as every other vcpu was.
        handle.stop_for_good();
    }
    TICKER.call_once(|| {
        // Best effort: without the thread, runs are simply never woken.
        let _ = std::thread::Builder::new().name("vcpu-tick".into()).spawn(tick);
    });
    id
}

/// Forgets vcpu `id` (it is closed).
pub fn unregister(id: u64) {
    registry().remove(&id);
}

/// Kicks vcpu `id`; false if it no longer exists.
pub fn kick(id: u64) -> bool {
    let handle = registry().get(&id).and_then(WeakVcpuSignalHandle::upgrade);
    handle.map(|h| h.kick()).is_some()
}

/// Whether the process is exiting (a wait on a guest event gives up then).
pub fn exiting() -> bool {
    SHUTDOWN.load(Ordering::Acquire)
}

/// For process exit: stops every vcpu for good, so no thread stays inside `KVM_RUN`
/// (Node joins its worker threads on exit): every later run returns at once.
pub fn shutdown() {
    SHUTDOWN.store(true, Ordering::Release);
    for handle in registry().values().filter_map(WeakVcpuSignalHandle::upgrade) {
        handle.stop_for_good();
    }
}

/// Every [`TICK`], wakes the threads whose current run began before the last tick.
fn tick() {
    let mut seen: Vec<(u64, u64)> = Vec::new();
    loop {
        std::thread::sleep(TICK);
        let running: Vec<(u64, u64, VcpuSignalHandle)> = registry()
            .iter()
            .filter_map(|(id, h)| h.upgrade().map(|h| (*id, h)))
            .filter_map(|(id, h)| h.current_run().map(|run| (id, run, h)))
            .collect();
        for (id, run, handle) in &running {
            if seen.contains(&(*id, *run)) {
                handle.wake_thread();
            }
        }
        seen = running.into_iter().map(|(id, run, _)| (id, run)).collect();
    }
}
