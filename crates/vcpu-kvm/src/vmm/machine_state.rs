//! What a Linux machine adds to its VM's snapshot: where the kernel was loaded and the
//! devices' state (the legacy ones and the virtio ones), as the snapshot's opaque
//! device section.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::linux::LinuxBoot;
use crate::error::{Error, Result};
use crate::kvm::{KvmVm, SnapshotInfo, SnapshotOptions};
use crate::vmm::devices::{DeviceState, LegacyDevices};

/// The most a machine's section may claim while it is decoded (it holds a few
/// registers, FIFOs and device descriptions): bincode's configured limit.
const MAX_SECTION: usize = 1 << 20;

/// Tells a Linux machine's section from any other VMM's.
const TAG: [u8; 8] = *b"VCPULNX2";

/// A Linux machine's part of a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MachineState {
    /// Where the kernel was loaded.
    pub boot: LinuxBoot,
    /// COM1 and the i8042.
    pub devices: DeviceState,
}

impl MachineState {
    /// The machine whose kernel `boot` describes, with `devices` as they are now;
    /// `ENOTSUP` if a device cannot be saved.
    pub fn new(boot: LinuxBoot, devices: &LegacyDevices) -> Result<Self> {
        Ok(MachineState {
            boot,
            devices: devices.state()?,
        })
    }

    /// Writes `vm` to `path` with this machine's part (see [`KvmVm::snapshot_with`]).
    pub fn snapshot(&self, vm: &KvmVm, path: &Path, diff: bool, key: Option<&[u8]>) -> Result<SnapshotInfo> {
        let devices = self.encode()?;
        let options = SnapshotOptions {
            diff,
            devices: Some(&devices),
            key,
        };
        vm.snapshot_with(path, &options)
    }

    /// The machine a restored `vm` was snapshotted with; `EINVAL` if it is not a Linux
    /// machine's snapshot.
    pub fn restored(vm: &KvmVm) -> Result<Self> {
        Self::decode(vm.restored_devices().as_deref())
    }

    /// Its legacy devices, wired to `vm`, in their saved state.
    pub fn devices(&self, vm: &KvmVm) -> Result<LegacyDevices> {
        LegacyDevices::with_state(vm, &self.devices)
    }

    /// The bytes for [`KvmVm::snapshot`]'s `devices`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = TAG.to_vec();
        bincode::serde::encode_into_std_write(self, &mut out, bincode::config::standard())
            .map_err(|e| Error::invalid("snapshot", format!("cannot encode the devices: {e}")))?;
        Ok(out)
    }

    /// The state from a restored VM's device section; `EINVAL` if it is not a Linux
    /// machine's.
    pub fn decode(bytes: Option<&[u8]>) -> Result<Self> {
        const OP: &str = "restoreLinux";
        let not_linux = || Error::invalid(OP, "restoreLinux: this snapshot is not of a Linux machine (bootLinux)");
        let body = bytes.and_then(|b| b.strip_prefix(&TAG[..])).ok_or_else(not_linux)?;
        bincode::serde::decode_from_slice(body, bincode::config::standard().with_limit::<MAX_SECTION>())
            .map(|(state, _)| state)
            .map_err(|_| not_linux())
    }
}
