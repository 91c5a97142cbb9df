//! `NativeVm`: memory slots, copies in and out of guest RAM, vcpu creation.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::KvmVm;

use crate::args::{uint, MAX_SAFE};
use crate::error::{IntoNapi, Result};
use crate::external::external_arraybuffer;
use crate::vcpu::NativeVcpu;

#[napi]
pub struct NativeVm {
    vm: KvmVm,
}

impl NativeVm {
    pub fn new(vm: KvmVm) -> Self {
        NativeVm { vm }
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

    /// A zero-copy `ArrayBuffer` over the slot's RAM (call once per slot: the facade
    /// caches it), or `null` where the runtime forbids external buffers.
    #[napi(ts_return_type = "ArrayBuffer | null")]
    pub fn memory_buffer<'env>(&self, env: &'env Env, slot: u32) -> Result<Option<Unknown<'env>>> {
        let region = self
            .vm
            .regions()
            .into_iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, r)| r)
            .ok_or_else(|| crate::error::invalid("bytes", format!("no memory region in slot {slot}")))?;
        let (ptr, len) = (region.host_ptr(), region.len());
        // SAFETY: the Arc keeps the mapping alive until the buffer is collected; the
        // facade asks once per region, so no other buffer has this address.
        unsafe { external_arraybuffer(env, ptr, len, Box::new(region)) }
            .map_err(|e| crate::error::invalid("bytes", e.reason.clone()))
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
    pub fn remove_memory(&self, slot: u32) -> Result<()> {
        self.vm.remove_memory(slot).js()
    }

    /// One bit per page of the slot, set for pages written since the last call.
    #[napi]
    pub fn get_dirty_log(&self, slot: u32) -> Result<BigUint64Array> {
        Ok(BigUint64Array::new(self.vm.get_dirty_log(slot).js()?))
    }

    #[napi]
    pub fn create_vcpu(&self, id: f64) -> Result<NativeVcpu> {
        let id = uint("createVcpu", "id", id, MAX_SAFE)?;
        Ok(NativeVcpu::new(self.vm.create_vcpu(id as usize).js()?))
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
