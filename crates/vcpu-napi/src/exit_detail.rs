//! The payload of an exit, for the kinds that have one, as a plain JS object.

use napi::bindgen_prelude::BigInt;
use napi_derive::napi;
use vcpu_kvm::VcpuExit;

use crate::args::big;

/// The payload of the last exit, for kinds that have one.
#[napi(object)]
pub struct ExitDetail {
    pub kind: String,
    pub hardware_entry_failure_reason: Option<BigInt>,
    pub suberror: Option<u32>,
    pub exception: Option<u32>,
    pub error_code: Option<u32>,
    pub pc: Option<BigInt>,
    pub dr6: Option<BigInt>,
    pub dr7: Option<BigInt>,
    pub vector: Option<u32>,
    pub index: Option<u32>,
    pub data: Option<BigInt>,
    pub write: Option<bool>,
    pub reason: Option<u32>,
}

impl From<VcpuExit> for ExitDetail {
    fn from(exit: VcpuExit) -> Self {
        let mut d = ExitDetail {
            kind: exit.kind().to_string(),
            hardware_entry_failure_reason: None,
            suberror: None,
            exception: None,
            error_code: None,
            pc: None,
            dr6: None,
            dr7: None,
            vector: None,
            index: None,
            data: None,
            write: None,
            reason: None,
        };
        match exit {
            VcpuExit::FailEntry {
                hardware_entry_failure_reason,
            } => d.hardware_entry_failure_reason = Some(big(hardware_entry_failure_reason)),
            VcpuExit::InternalError { suberror } => d.suberror = Some(suberror),
            VcpuExit::Exception { exception, error_code } => {
                d.exception = Some(exception);
                d.error_code = Some(error_code);
            }
            VcpuExit::Debug {
                exception,
                pc,
                dr6,
                dr7,
            } => {
                d.exception = Some(exception);
                d.pc = Some(big(pc));
                d.dr6 = Some(big(dr6));
                d.dr7 = Some(big(dr7));
            }
            VcpuExit::IoapicEoi { vector } => d.vector = Some(vector.into()),
            VcpuExit::MsrAccess { index, data, write } => {
                d.index = Some(index);
                d.data = Some(big(data));
                d.write = Some(write);
            }
            VcpuExit::Unknown { reason } => d.reason = Some(reason),
            _ => {}
        }
        d
    }
}
