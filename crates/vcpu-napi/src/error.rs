//! Errors cross into JS as `Error`s whose `code` is `"<CODE>:<op>"` (for example
//! `"ECLOSED:run"`); the TS facade turns them into `VcpuError { code, op }`.

pub type Result<T> = napi::Result<T, String>;

pub fn to_napi(e: vcpu_kvm::Error) -> napi::Error<String> {
    napi::Error::new(format!("{}:{}", e.code_name(), e.op()), e.message().to_string())
}

/// A refused argument.
pub fn invalid(op: &str, message: impl Into<String>) -> napi::Error<String> {
    napi::Error::new(format!("EINVAL:{op}"), message.into())
}

/// Use of a closed object.
pub fn closed(op: &str, what: &str) -> napi::Error<String> {
    napi::Error::new(format!("ECLOSED:{op}"), format!("{op}: the {what} is closed"))
}

pub trait IntoNapi<T> {
    fn js(self) -> Result<T>;
}

impl<T> IntoNapi<T> for vcpu_kvm::Result<T> {
    fn js(self) -> Result<T> {
        self.map_err(to_napi)
    }
}
