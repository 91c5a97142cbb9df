//! The GDB stub, for JS.

use napi_derive::napi;
use vcpu_kvm::vmm::gdb::GdbServer;

use crate::error::{IntoNapi, Result};
use crate::vm::NativeVm;

/// A listening GDB stub.
#[napi]
pub struct NativeGdbServer {
    server: Option<GdbServer>,
    port: u16,
}

#[napi]
impl NativeGdbServer {
    /// The port it listens on.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.port.into()
    }

    /// Stops listening; a debugger still attached is detached. Idempotent.
    #[napi]
    pub fn close(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.close();
        }
    }
}

#[napi]
impl NativeVm {
    /// Serves the GDB remote protocol for this VM on `host:port` (0 picks a port).
    #[napi]
    pub fn gdb_server(&self, host: String, port: f64, wait: bool) -> Result<NativeGdbServer> {
        let port = crate::args::uint("gdbServer", "port", port, u16::MAX.into())? as u16;
        let server = GdbServer::start(&self.vm, &host, port, wait).js()?;
        Ok(NativeGdbServer {
            port: server.port(),
            server: Some(server),
        })
    }
}
