//! The one error type of the crate: what failed (`op`), why (`code`), and a sentence a
//! person can act on.

use std::fmt;

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// A host call failed with this `errno`, or an argument was refused before reaching
    /// the kernel with the `errno` the kernel would have used (`EINVAL`, `EEXIST`, ...).
    Errno(i32),
    /// The object (VM, vcpu, memory region) was closed.
    Closed,
}

/// An error from this crate. `run()` reports an interrupted run as an error whose
/// [`Error::is_interrupted`] is true, as crosvm does.
///
/// One pointer wide (the parts are boxed, as `std::io::Error` does): a `Result<()>` is
/// returned in a register, so the path that succeeds — every exit — moves nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<Parts>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Parts {
    code: ErrorCode,
    op: &'static str,
    message: String,
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with an explicit message.
    pub fn new(code: ErrorCode, op: &'static str, message: impl Into<String>) -> Self {
        Error(Box::new(Parts {
            code,
            op,
            message: message.into(),
        }))
    }

    /// A refused argument: `EINVAL` with a message saying what was wrong.
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Errno(libc::EINVAL), op, message)
    }

    /// A host call that failed with `errno`; the message is the system's text for it.
    pub fn errno(op: &'static str, errno: i32) -> Self {
        let text = std::io::Error::from_raw_os_error(errno).to_string();
        Self::new(ErrorCode::Errno(errno), op, format!("{op} failed: {text}"))
    }

    /// Use of a closed object.
    pub fn closed(op: &'static str, what: &str) -> Self {
        Self::new(ErrorCode::Closed, op, format!("{op}: the {what} is closed"))
    }

    /// Why it failed.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// The `errno`, if the error has one.
    pub fn errno_value(&self) -> Option<i32> {
        match self.0.code {
            ErrorCode::Errno(e) => Some(e),
            ErrorCode::Closed => None,
        }
    }

    /// The symbolic code: `"ENOENT"`, `"EINVAL"`, `"ECLOSED"`, ... (`"E<n>"` for an errno
    /// without a name here).
    pub fn code_name(&self) -> String {
        let e = match self.0.code {
            ErrorCode::Closed => return "ECLOSED".to_string(),
            ErrorCode::Errno(e) => e,
        };
        let name = match e {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENOSPC => "ENOSPC",
            libc::ERANGE => "ERANGE",
            libc::EMFILE => "EMFILE",
            libc::ENFILE => "ENFILE",
            libc::ENOTTY => "ENOTTY",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::EPIPE => "EPIPE",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTSUP => "ENOTSUP",
            libc::ETIMEDOUT => "ETIMEDOUT",
            _ => return format!("E{e}"),
        };
        name.to_string()
    }

    /// The operation that failed (`"createVm"`, `"run"`, ...).
    pub fn op(&self) -> &'static str {
        self.0.op
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// True for a run interrupted by an immediate exit or a signal (`EINTR`).
    pub fn is_interrupted(&self) -> bool {
        self.0.code == ErrorCode::Errno(libc::EINTR)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0.message, self.code_name())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.0.code)
            .field("op", &self.0.op)
            .field("message", &self.0.message)
            .finish()
    }
}

impl std::error::Error for Error {}

/// Turns a kvm-ioctls / vmm-sys-util errno error into ours, naming the operation.
pub(crate) trait Context<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, vmm_sys_util::errno::Error> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::errno(op, e.errno()))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::errno(op, e.raw_os_error().unwrap_or(libc::EIO)))
    }
}
