//! The architecture's Linux boot protocol (`load_linux`, `start_linux`, `LinuxBoot`),
//! and the errors both loaders give for a kernel they cannot load.

#[cfg(target_arch = "aarch64")]
pub use super::aarch64::linux::*;
#[cfg(target_arch = "x86_64")]
pub use super::x86_64::linux::*;

use crate::error::{Error, ErrorCode};

/// `EINVAL`: not a kernel this architecture loads (`kind` names what it wanted).
pub(crate) fn bad_image(kind: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Errno(libc::EINVAL),
        "loadLinux",
        format!("not a loadable {kind}: {why}"),
    )
}

/// `ENOMEM`: `what` does not fit in the guest's memory.
pub(crate) fn too_big(what: &str) -> Error {
    Error::new(
        ErrorCode::Errno(libc::ENOMEM),
        "loadLinux",
        format!("the {what} does not fit in guest memory"),
    )
}
