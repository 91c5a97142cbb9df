//! Booting Linux: the boot-protocol loader and the legacy devices, for JS.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vcpu_kvm::vmm::devices::LegacyDevices;
use vcpu_kvm::vmm::linux::{load_linux, start_linux, LinuxBoot};
use vcpu_kvm::vmm::machine_state::MachineState;
use vcpu_kvm::vmm::virtio::{mmio_slot, Block, Console, MmioTransport, Net, Rng, VirtioDevice, Vsock};
use vcpu_kvm::{KvmVm, Vcpu, VcpuExit};

use crate::async_runner::{report_final, run_to_exit};
use crate::error::{to_napi, IntoNapi, Result};
use crate::js_callback::JsCallback;
use crate::vcpu::NativeVcpu;
use crate::vm::{NativeVm, SnapshotInfo};

/// Where a loaded kernel starts (see `vcpu_kvm::vmm::linux::LinuxBoot`).
#[napi(object)]
pub struct LinuxBootInfo {
    /// The kernel's entry point (x86: its 64-bit entry).
    pub entry: f64,
    /// x86: the zero page (`boot_params`); 0 on arm64.
    pub zero_page: f64,
    /// arm64: the device tree; 0 on x86.
    pub fdt: f64,
    /// First byte after the kernel.
    pub kernel_end: f64,
    /// Where the initrd is (0 without one).
    pub initrd_address: f64,
    /// The initrd's size.
    pub initrd_size: f64,
}

impl From<LinuxBoot> for LinuxBootInfo {
    fn from(b: LinuxBoot) -> Self {
        #[cfg(target_arch = "x86_64")]
        let (zero_page, fdt) = (b.zero_page, 0);
        #[cfg(target_arch = "aarch64")]
        let (zero_page, fdt) = (0, b.fdt);
        LinuxBootInfo {
            entry: b.entry as f64,
            zero_page: zero_page as f64,
            fdt: fdt as f64,
            kernel_end: b.kernel_end as f64,
            initrd_address: b.initrd.0 as f64,
            initrd_size: b.initrd.1 as f64,
        }
    }
}

impl From<&LinuxBootInfo> for LinuxBoot {
    fn from(b: &LinuxBootInfo) -> Self {
        LinuxBoot {
            entry: b.entry as u64,
            #[cfg(target_arch = "x86_64")]
            zero_page: b.zero_page as u64,
            #[cfg(target_arch = "aarch64")]
            fdt: b.fdt as u64,
            kernel_end: b.kernel_end as u64,
            initrd: (b.initrd_address as u64, b.initrd_size as u64),
        }
    }
}

/// Loads a kernel, an initrd and a command line into `vm` for `cpus` processors, with
/// the first `virtio` device slots announced (x86: bzImage or ELF, an MP table; arm64:
/// an `Image`, a device tree).
pub fn load(
    vm: &KvmVm,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    cpus: f64,
    virtio: u32,
) -> Result<LinuxBootInfo> {
    let cpus = crate::args::uint("loadLinux", "cpus", cpus, 254.0)? as usize;
    Ok(load_linux(vm, kernel, initrd, cmdline, cpus, virtio as usize)
        .js()?
        .into())
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
fn parse_mac(op: &str, mac: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = mac.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    let parts = mac.split(':').count();
    <[u8; 6]>::try_from(bytes)
        .ok()
        .filter(|_| parts == 6)
        .ok_or_else(|| crate::error::invalid(op, format!("{op}: '{mac}' is not a MAC address (aa:bb:cc:dd:ee:ff)")))
}

/// Where a virtio device sits: its MMIO window and interrupt line.
#[napi(object)]
pub struct VirtioSlot {
    pub address: f64,
    pub irq: u32,
}

/// COM1, the i8042 and the port sink of one VM.
#[napi]
pub struct NativeDevices {
    pub(crate) devices: Arc<LegacyDevices>,
}

impl NativeDevices {
    pub fn new(vm: &KvmVm) -> Result<Self> {
        Ok(NativeDevices {
            devices: Arc::new(LegacyDevices::new(vm).js()?),
        })
    }
}

#[napi]
impl NativeDevices {
    /// Console output written since the last call.
    #[napi]
    pub fn take_output(&self) -> Buffer {
        self.devices.output().take().into()
    }

    /// Stops the virtio devices and lets go of their files and sockets.
    #[napi]
    pub fn close_virtio(&self) {
        self.devices.close_virtio();
    }

    /// How many virtio devices the machine has.
    #[napi(getter)]
    pub fn virtio_count(&self) -> u32 {
        self.devices.virtio_count() as u32
    }

    /// Queues console input; returns how many bytes the UART took (its FIFO is small:
    /// offer the rest again later).
    #[napi]
    pub fn input(&self, bytes: &[u8]) -> Result<u32> {
        Ok(self.devices.serial_input(bytes).js()? as u32)
    }
}

#[napi]
impl NativeVcpu {
    /// Puts the boot vcpu (id 0) at a loaded kernel's entry; any other waits for the
    /// kernel to start it.
    #[napi]
    pub fn start_linux(&self, boot: LinuxBootInfo) -> Result<()> {
        self.with("startLinux", |v| start_linux(v, &LinuxBoot::from(&boot)).js())
    }

    /// Runs on a native thread with `devices` handling port I/O, until something else
    /// happens (an i8042 reset is `SystemEventReset`) or a kick (`Intr`); then calls
    /// `cb(null, 256 + exitCode)`, or `cb(error)`.
    #[napi]
    pub fn run_devices(
        &self,
        devices: &NativeDevices,
        #[napi(ts_arg_type = "(err: Error | null, event: number) => boolean")] cb: JsCallback,
    ) -> Result<()> {
        let vcpu = self.vcpu_arc("runDevices")?;
        let devices = devices.devices.clone();
        std::thread::Builder::new()
            .name(format!("vcpu-{}", vcpu.id()))
            .spawn(move || {
                // The vcpu keeps the last exit (for `lastExit()`) itself.
                let result = run_to_exit(&vcpu, &|| true, || devices.run(&vcpu), VcpuExit::Intr);
                report_final(&cb, result.map_err(to_napi));
            })
            .map_err(|e| crate::error::invalid("runDevices", format!("cannot start the vcpu thread: {e}")))?;
        Ok(())
    }
}

#[napi]
impl NativeVm {
    /// Loads a Linux kernel, an initrd and a command line following the architecture's
    /// boot protocol, for `cpus` processors and the machine's first `virtio` devices
    /// (x86: a bzImage or ELF vmlinux, an MP table, the devices on the command line;
    /// arm64: an `Image`, a device tree describing them).
    #[napi]
    pub fn load_linux(
        &self,
        kernel: &[u8],
        initrd: Option<&[u8]>,
        cmdline: String,
        cpus: f64,
        virtio: u32,
    ) -> Result<LinuxBootInfo> {
        load(&self.vm, kernel, initrd, &cmdline, cpus, virtio)
    }

    /// COM1, the i8042 and the port sink, wired to the in-kernel irqchip.
    #[napi]
    pub fn create_devices(&self) -> Result<NativeDevices> {
        NativeDevices::new(&self.vm)
    }

    /// Where the first `count` virtio devices of the machine go.
    #[napi]
    pub fn virtio_slots(&self, count: u32) -> Result<Vec<VirtioSlot>> {
        (0..count as usize)
            .map(|i| {
                let (address, irq) = mmio_slot(&self.vm, i).js()?;
                Ok(VirtioSlot {
                    address: address as f64,
                    irq,
                })
            })
            .collect()
    }

    /// Puts a virtio device (`kind` 'block' over the image at `path`, 'rng', 'console',
    /// which then takes the machine's console input, 'vsock' for guest `cid` with its
    /// host side on the UNIX socket `path`, or 'net' on the tap `path` with `mac`) on the
    /// machine's MMIO bus, in the next slot.
    #[napi]
    pub fn attach_virtio(
        &self,
        devices: &NativeDevices,
        kind: String,
        path: Option<String>,
        read_only: Option<bool>,
        cid: Option<f64>,
        mac: Option<String>,
    ) -> Result<VirtioSlot> {
        const OP: &str = "bootLinux";
        let device: Box<dyn VirtioDevice> = match (kind.as_str(), path) {
            ("block", Some(path)) => {
                Box::new(Block::open(std::path::Path::new(&path), read_only.unwrap_or(false)).js()?)
            }
            ("rng", None) => Box::new(Rng::default()),
            ("net", Some(tap)) => {
                Box::new(Net::open(&tap, parse_mac(OP, mac.as_deref().unwrap_or("02:00:00:00:00:01"))?).js()?)
            }
            ("vsock", Some(uds)) => {
                let cid = crate::args::uint(OP, "vsock.cid", cid.unwrap_or(3.0), u32::MAX.into())?;
                Box::new(Vsock::new(cid, std::path::Path::new(&uds)).js()?)
            }
            ("console", None) => {
                let console = Console::new(Box::new(devices.devices.output().clone())).js()?;
                devices.devices.route_input(console.input());
                Box::new(console)
            }
            _ => {
                return Err(crate::error::invalid(
                    OP,
                    format!("{OP}: no virtio device '{kind}' with these options"),
                ))
            }
        };
        let (address, irq) = mmio_slot(&self.vm, devices.devices.virtio_count()).js()?;
        let transport = MmioTransport::new(&self.vm, address, irq, device).js()?;
        devices.devices.attach(Arc::new(transport));
        Ok(VirtioSlot {
            address: address as f64,
            irq,
        })
    }

    /// A snapshot of a Linux machine: the VM with its devices and boot information.
    #[napi]
    pub fn snapshot_linux(
        &self,
        path: String,
        diff: bool,
        devices: &NativeDevices,
        boot: LinuxBootInfo,
        key: Option<&[u8]>,
    ) -> Result<SnapshotInfo> {
        let machine = MachineState::new(LinuxBoot::from(&boot), &devices.devices).js()?;
        let info = machine
            .snapshot(&self.vm, std::path::Path::new(&path), diff, key)
            .js()?;
        Ok(info.into())
    }

    /// A restored Linux machine's devices, in their saved state.
    #[napi]
    pub fn restore_devices(&self) -> Result<NativeDevices> {
        let machine = MachineState::restored(&self.vm).js()?;
        Ok(NativeDevices {
            devices: Arc::new(machine.devices(&self.vm).js()?),
        })
    }

    /// Where a restored Linux machine's kernel was loaded.
    #[napi]
    pub fn restored_boot(&self) -> Result<LinuxBootInfo> {
        Ok(MachineState::restored(&self.vm).js()?.boot.into())
    }
}
