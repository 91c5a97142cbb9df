//! `NativeKvm`: `/dev/kvm`.

use napi_derive::napi;
use vcpu_kvm::{Kvm, VmConfig};

use crate::args::uint;
use crate::error::{IntoNapi, Result};
use crate::vm::NativeVm;

#[napi]
pub struct NativeKvm {
    /// `None` once closed (VMs already created keep working: they hold their own fds).
    kvm: std::cell::RefCell<Option<Kvm>>,
}

impl NativeKvm {
    pub(crate) fn with<R>(&self, op: &str, f: impl FnOnce(&Kvm) -> Result<R>) -> Result<R> {
        match self.kvm.borrow().as_ref() {
            Some(kvm) => f(kvm),
            None => Err(crate::error::closed(op, "KVM device")),
        }
    }
}

#[napi]
impl NativeKvm {
    #[napi(factory)]
    pub fn open(path: Option<String>) -> Result<NativeKvm> {
        Ok(NativeKvm {
            kvm: std::cell::RefCell::new(Some(Kvm::open(path.as_deref()).js()?)),
        })
    }

    #[napi(getter)]
    pub fn api_version(&self) -> Result<i32> {
        self.with("apiVersion", |k| Ok(k.api_version()))
    }

    #[napi]
    pub fn check_extension(&self, cap: f64) -> Result<i32> {
        let cap = uint("checkExtension", "cap", cap, u32::MAX.into())?;
        self.with("checkExtension", |k| Ok(k.check_extension(cap as u32)))
    }

    /// `hypercall_port`: -1 turns the port ABI off.
    #[napi]
    pub fn create_vm(&self, irqchip: bool, hypercall_port: f64, userspace_msr: bool) -> Result<NativeVm> {
        let hypercall_port = if hypercall_port == -1.0 {
            None
        } else {
            Some(uint("createVm", "hypercallPort", hypercall_port, u16::MAX.into())? as u16)
        };
        let vm = self.with("createVm", |k| {
            k.create_vm(VmConfig {
                irqchip,
                hypercall_port,
                userspace_msr,
            })
            .js()
        })?;
        Ok(NativeVm::new(vm))
    }

    /// A VM restored from the snapshot file at `path`, which must be signed with `key`
    /// if one is given.
    #[napi]
    pub fn restore_vm(&self, path: String, key: Option<&[u8]>) -> Result<NativeVm> {
        let vm = self.with("restoreVm", |k| {
            k.restore_vm_with(std::path::Path::new(&path), key).js()
        })?;
        Ok(NativeVm::new(vm))
    }

    /// Closes `/dev/kvm` (VMs already created keep working). Idempotent.
    #[napi]
    pub fn close(&self) {
        self.kvm.borrow_mut().take();
    }
}
