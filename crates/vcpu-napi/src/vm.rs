//! `NativeVm`: memory slots, copies in and out of guest RAM, vcpu creation.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::kvm::WeakVm;
use vcpu_kvm::KvmVm;

use crate::args::{uint, MAX_SAFE};
use crate::error::{IntoNapi, Result};
use crate::external::external_arraybuffer;
use crate::vcpu::NativeVcpu;

/// One memory region, as every thread sees it.
#[napi(object)]
pub struct RegionInfo {
    /// The KVM memory slot.
    pub slot: u32,
    /// Guest physical address of the first byte.
    pub guest_address: f64,
    /// Size in bytes.
    pub size: f64,
    /// Read-only for the guest.
    pub readonly: bool,
    /// Dirty pages are logged.
    pub dirty_log: bool,
}

/// What `snapshot` wrote.
#[napi(object)]
pub struct SnapshotInfo {
    /// Bytes of data written (header, state, memory pages; not the holes).
    pub bytes: f64,
    /// Guest memory pages written.
    pub pages: f64,
}

impl From<vcpu_kvm::kvm::SnapshotInfo> for SnapshotInfo {
    fn from(info: vcpu_kvm::kvm::SnapshotInfo) -> Self {
        SnapshotInfo {
            bytes: info.bytes as f64,
            pages: info.pages as f64,
        }
    }
}

/// VMs that a handle can name, process-wide; weak, so a handle keeps nothing alive.
static HANDLES: LazyLock<Mutex<HashMap<u32, WeakVm>>> = LazyLock::new(Mutex::default);

fn handles() -> std::sync::MutexGuard<'static, HashMap<u32, WeakVm>> {
    // Each update is one insert or retain: a poisoned map is still consistent.
    HANDLES.lock().unwrap_or_else(|p| p.into_inner())
}

#[napi]
pub struct NativeVm {
    pub(crate) vm: KvmVm,
    handle: Cell<u32>,
}

impl NativeVm {
    pub fn new(vm: KvmVm) -> Self {
        NativeVm {
            vm,
            handle: Cell::new(0),
        }
    }
}

#[napi]
impl NativeVm {
    /// Returns the slot number.
    #[napi]
    pub fn add_memory(&self, guest_address: f64, size: f64, readonly: bool, dirty_log: bool) -> Result<u32> {
        const OP: &str = "addMemory";
        let gpa = uint(OP, "guestAddress", guest_address, MAX_SAFE)?;
        let size = uint(OP, "size", size, MAX_SAFE)?;
        let (slot, _) = self.vm.add_memory(gpa, size as usize, readonly, dirty_log).js()?;
        Ok(slot)
    }

    /// A zero-copy `ArrayBuffer` over the slot's RAM, through a mapping of its own (so
    /// it has a unique address and outlives the slot), or `null` where the runtime
    /// forbids external buffers.
    #[napi(ts_return_type = "ArrayBuffer | null")]
    pub fn memory_buffer<'env>(&self, env: &'env Env, slot: f64) -> Result<Option<Unknown<'env>>> {
        let slot = uint("bytes", "slot", slot, u32::MAX.into())? as u32;
        let region = self
            .vm
            .regions()
            .into_iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, r)| r)
            .ok_or_else(|| crate::error::closed("bytes", "memory region"))?;
        let view = region.map_view().js()?;
        let (ptr, len) = (view.as_ptr(), view.len());
        let unique = !region.views_share_address();
        // SAFETY: the Arc keeps the mapping alive until the buffer is collected.
        unsafe { external_arraybuffer(env, ptr, len, Box::new(view), unique) }
            .map_err(|e| crate::error::invalid("bytes", e.reason.clone()))
    }

    /// The regions mapped now.
    #[napi]
    pub fn regions(&self) -> Vec<RegionInfo> {
        self.vm
            .slots()
            .into_iter()
            .map(|(slot, r, dirty_log)| RegionInfo {
                slot,
                guest_address: r.guest_address() as f64,
                size: r.len() as f64,
                readonly: r.readonly(),
                dirty_log,
            })
            .collect()
    }

    /// A process-wide number naming this VM, for `fromHandle` in any worker.
    #[napi(getter)]
    pub fn handle(&self) -> Result<u32> {
        if self.vm.is_closed() {
            return Err(crate::error::closed("handle", "VM"));
        }
        if self.handle.get() == 0 {
            static NEXT: AtomicU32 = AtomicU32::new(1);
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            let mut map = handles();
            map.retain(|_, w| w.upgrade().is_some());
            map.insert(id, self.vm.downgrade());
            self.handle.set(id);
        }
        Ok(self.handle.get())
    }

    /// The VM a handle names, for this thread. `ECLOSED` once it is closed or gone.
    #[napi(factory)]
    pub fn from_handle(handle: f64) -> Result<NativeVm> {
        let handle = uint("Vm.fromHandle", "handle", handle, u32::MAX.into())? as u32;
        let vm = handles()
            .get(&handle)
            .and_then(WeakVm::upgrade)
            .ok_or_else(|| crate::error::closed("Vm.fromHandle", "VM"))?;
        Ok(NativeVm {
            vm,
            handle: Cell::new(handle),
        })
    }

    #[napi]
    pub fn read(&self, gpa: f64, length: f64) -> Result<Uint8Array> {
        let gpa = uint("read", "gpa", gpa, MAX_SAFE)?;
        let length = uint("read", "length", length, MAX_SAFE)?;
        Ok(Uint8Array::new(self.vm.read_vec(gpa, length as usize).js()?))
    }

    #[napi]
    pub fn write(&self, gpa: f64, data: &[u8]) -> Result<()> {
        let gpa = uint("write", "gpa", gpa, MAX_SAFE)?;
        self.vm.write(gpa, data).js()
    }

    #[napi]
    pub fn remove_memory(&self, slot: f64) -> Result<()> {
        let slot = uint("removeMemory", "slot", slot, u32::MAX.into())? as u32;
        self.vm.remove_memory(slot).js()
    }

    /// One bit per page of the slot, set for pages written since the last call.
    #[napi]
    pub fn get_dirty_log(&self, slot: f64) -> Result<BigUint64Array> {
        let slot = uint("getDirtyLog", "slot", slot, u32::MAX.into())? as u32;
        Ok(BigUint64Array::new(self.vm.get_dirty_log(slot).js()?))
    }

    #[napi]
    pub fn create_vcpu(&self, id: f64) -> Result<NativeVcpu> {
        let id = uint("createVcpu", "id", id, MAX_SAFE)?;
        Ok(NativeVcpu::new(self.vm.create_vcpu(id as usize).js()?))
    }

    /// `KVM_ENABLE_CAP` on the VM.
    #[napi]
    pub fn enable_capability(&self, cap: f64, args: Vec<BigInt>) -> Result<()> {
        const OP: &str = "enableCapability";
        let cap = uint(OP, "cap", cap, u32::MAX.into())? as u32;
        let raw = crate::args::four_u64(OP, &args)?;
        // SAFETY: the caller's contract, as for the vcpu's: capabilities whose arguments
        // are host pointers are documented as unsafe in the facade.
        unsafe { self.vm.enable_raw_capability(cap, &raw) }.js()
    }

    /// Writes the VM to a snapshot file, signed with `key` if given.
    #[napi]
    pub fn snapshot(&self, path: String, diff: bool, key: Option<&[u8]>) -> Result<SnapshotInfo> {
        let options = vcpu_kvm::kvm::SnapshotOptions {
            diff,
            devices: None,
            key,
        };
        Ok(self
            .vm
            .snapshot_with(std::path::Path::new(&path), &options)
            .js()?
            .into())
    }

    /// Marks the VM as it is now as its reset point.
    #[napi]
    pub fn mark_reset_point(&self) -> Result<()> {
        self.vm.mark_reset_point().js()
    }

    /// Returns the VM to its reset point.
    #[napi]
    pub fn reset(&self) -> Result<()> {
        self.vm.reset().js()
    }

    /// Whether the VM has a reset point.
    #[napi(getter)]
    pub fn has_reset_point(&self) -> bool {
        self.vm.has_reset_point()
    }

    /// The vcpu ids of the snapshot this VM was restored from.
    #[napi(getter)]
    pub fn snapshot_vcpu_ids(&self) -> Vec<u32> {
        self.vm.snapshot_vcpu_ids()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.vm.is_closed()
    }

    #[napi]
    pub fn close(&self) {
        self.vm.close();
    }
}
