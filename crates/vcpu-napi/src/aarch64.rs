//! arm64 registers for JS: the general ones as a `BigUint64Array` in
//! `ARM64_CORE_REG_NAMES` order (the facade names them), any register by id.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::kvm::{Arm64Regs, ARM64_CORE_REG_NAMES};

use crate::args::{big, u64_of};
use crate::error::{invalid, IntoNapi, Result};
use crate::vcpu::NativeVcpu;

/// The names of the values `getArm64Regs` returns, in order.
#[napi]
pub fn arm64_reg_names() -> Vec<String> {
    ARM64_CORE_REG_NAMES.iter().map(|n| n.to_string()).collect()
}

fn to_values(r: &Arm64Regs) -> Vec<u64> {
    let mut v = r.x.to_vec();
    v.extend([r.sp, r.pc, r.pstate, r.sp_el1, r.elr_el1, r.spsr_el1]);
    v
}

fn from_values(v: &[u64]) -> Result<Arm64Regs> {
    if v.len() != ARM64_CORE_REG_NAMES.len() {
        return Err(invalid(
            "setRegs",
            format!("setRegs: {} registers, not {}", ARM64_CORE_REG_NAMES.len(), v.len()),
        ));
    }
    let mut r = Arm64Regs::default();
    r.x.copy_from_slice(&v[..31]);
    [r.sp, r.pc, r.pstate, r.sp_el1, r.elr_el1, r.spsr_el1] = [v[31], v[32], v[33], v[34], v[35], v[36]];
    Ok(r)
}

#[napi]
impl NativeVcpu {
    /// The general registers, in `arm64RegNames()` order.
    #[napi]
    pub fn get_arm64_regs(&self) -> Result<BigUint64Array> {
        self.with("getRegs", |v| {
            Ok(BigUint64Array::new(to_values(&v.get_arm64_regs().js()?)))
        })
    }

    /// Sets the general registers (all of them, in `arm64RegNames()` order).
    #[napi]
    pub fn set_arm64_regs(&self, values: BigUint64Array) -> Result<()> {
        let regs = from_values(&values)?;
        self.with("setRegs", |v| v.set_arm64_regs(&regs).js())
    }

    /// `KVM_GET_ONE_REG` of a 64-bit register.
    #[napi]
    pub fn get_one_reg(&self, id: BigInt) -> Result<BigInt> {
        let id = u64_of("getOneReg", "id", &id)?;
        self.with("getOneReg", |v| Ok(big(v.get_one_reg(id).js()?)))
    }

    /// `KVM_SET_ONE_REG` of a 64-bit register.
    #[napi]
    pub fn set_one_reg(&self, id: BigInt, value: BigInt) -> Result<()> {
        let id = u64_of("setOneReg", "id", &id)?;
        let value = u64_of("setOneReg", "value", &value)?;
        self.with("setOneReg", |v| v.set_one_reg(id, value).js())
    }

    /// Starts the vcpu at `pc` in EL1h with SP_EL1 = `sp`.
    #[napi]
    pub fn setup_el1(&self, pc: BigInt, sp: BigInt) -> Result<()> {
        let pc = u64_of("setupEl1", "pc", &pc)?;
        let sp = u64_of("setupEl1", "sp", &sp)?;
        self.with("setupEl1", |v| v.setup_el1(pc, sp).js())
    }
}
