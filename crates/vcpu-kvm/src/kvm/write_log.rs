//! What the host wrote into a region since the VM's last snapshot: the other half of a
//! diff snapshot (KVM's dirty log sees only the guest's writes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::memory::PAGE_SIZE;

/// One bit per page the host wrote through `write`, or "every page" once a zero-copy
/// view was handed out (a view can write anywhere, unseen). Off until the VM's first
/// snapshot or restore: only then is there a base for a diff.
#[derive(Default)]
pub(crate) struct WriteLog {
    pages: Mutex<Option<Vec<u64>>>,
    all: AtomicBool,
}

impl WriteLog {
    /// Starts (or restarts) the log empty, for a region of `len` bytes: a snapshot was
    /// just taken. A region with live views stays "every page".
    pub(crate) fn restart(&self, len: usize, views_live: bool) {
        let words = (len as u64 / PAGE_SIZE).div_ceil(64) as usize;
        *self.lock() = Some(vec![0; words]);
        self.all.store(views_live, Ordering::Relaxed);
    }

    /// Records a host write of `len` bytes at `offset`.
    pub(crate) fn mark(&self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        let mut pages = self.lock();
        if let Some(bits) = pages.as_mut() {
            let first = offset as u64 / PAGE_SIZE;
            let last = (offset + len - 1) as u64 / PAGE_SIZE;
            for page in first..=last {
                bits[(page / 64) as usize] |= 1 << (page % 64);
            }
        }
    }

    /// Records the guest's writes (`pages`, from KVM's dirty log, one bit per page).
    pub(crate) fn add(&self, pages: &[u64]) {
        if let Some(bits) = self.lock().as_mut() {
            for (b, p) in bits.iter_mut().zip(pages) {
                *b |= p;
            }
        }
    }

    /// Every page counts as written from now on (a view was handed out).
    pub(crate) fn mark_all(&self) {
        self.all.store(true, Ordering::Relaxed);
    }

    /// The pages written (by the host, and by the guest as far as `add` was told), one
    /// bit per page; `None` if the log is off.
    pub(crate) fn written(&self) -> Option<Vec<u64>> {
        let pages = self.lock();
        let bits = pages.as_ref()?;
        if self.all.load(Ordering::Relaxed) {
            return Some(vec![u64::MAX; bits.len()]);
        }
        Some(bits.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<u64>>> {
        // A bitmap is always whole: a poisoned lock is still consistent.
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }
}
