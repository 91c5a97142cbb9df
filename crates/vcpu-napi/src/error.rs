//! Errors cross into JS as data: an `Error` whose `code` is the errno name alone
//! (`"EINVAL"`, `"ECLOSED"`, …) and whose message says what was wrong. The facade adds
//! the operation the user called and makes it a `VcpuError`; nothing is parsed.

pub type Result<T> = napi::Result<T, String>;

pub fn to_napi(e: vcpu_kvm::Error) -> napi::Error<String> {
    napi::Error::new(e.code_name(), e.message().to_string())
}

/// A refused argument. (`op` names the operation in the message.)
pub fn invalid(op: &str, message: impl Into<String>) -> napi::Error<String> {
    let message = message.into();
    let message = if message.starts_with(op) {
        message
    } else {
        format!("{op}: {message}")
    };
    napi::Error::new("EINVAL".to_string(), message)
}

/// Use of a closed object.
pub fn closed(op: &str, what: &str) -> napi::Error<String> {
    napi::Error::new("ECLOSED".to_string(), format!("{op}: the {what} is closed"))
}

/// A vcpu in use elsewhere.
pub fn busy(op: &str, why: &str) -> napi::Error<String> {
    napi::Error::new("EBUSY".to_string(), format!("{op}: {why}"))
}

pub trait IntoNapi<T> {
    fn js(self) -> Result<T>;
}

impl<T> IntoNapi<T> for vcpu_kvm::Result<T> {
    fn js(self) -> Result<T> {
        self.map_err(to_napi)
    }
}
