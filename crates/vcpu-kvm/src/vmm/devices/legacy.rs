//! A 16550A UART (vm-superio's `Serial`: on COM1's ports on x86, on MMIO at
//! `UART_ADDR` on arm64), the i8042 controller's reset line (vm-superio's
//! `I8042Device`, x86), a sink for every other port a kernel probes, and the machine's
//! virtio devices on the MMIO bus.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use vm_superio::serial::SerialState;
use vm_superio::{I8042Device, Serial, Trigger};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::error::{Context, Error, Result};
use crate::kvm::KvmVm;
use crate::vmm::virtio::{ConsoleInput, MmioTransport, SavedTransport};
use crate::{IoOperation, IoParams, KvmVcpu, Vcpu, VcpuExit};

/// COM1's first port.
pub const COM1_BASE: u64 = 0x3f8;
/// COM1's interrupt line on the in-kernel PIC/IOAPIC.
pub const COM1_IRQ: u32 = 4;
/// The UART's interrupt line: COM1's on x86, a GIC shared interrupt on arm64.
#[cfg(target_arch = "x86_64")]
const SERIAL_IRQ: u32 = COM1_IRQ;
#[cfg(target_arch = "aarch64")]
const SERIAL_IRQ: u32 = crate::arch::aarch64::layout::UART_IRQ;
/// The i8042 controller's data port (its command port is `+ 4`).
pub const I8042_BASE: u64 = 0x60;

/// An `EventFd` as vm-superio's interrupt and reset trigger.
struct EventTrigger(EventFd);

impl Trigger for EventTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// What the guest has written to the console and nobody has taken yet.
#[derive(Clone, Default)]
pub struct SerialOutput(Arc<Mutex<Vec<u8>>>);

impl SerialOutput {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A Vec push cannot be left half done: a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes everything written so far.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.lock())
    }
}

impl Write for SerialOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a snapshot keeps of the devices: COM1's registers and input FIFO (the i8042 and
/// the sink have no state), and each virtio device with its transport and queues.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeviceState {
    serial: SavedSerial,
    virtio: Vec<SavedTransport>,
}

/// vm-superio's `SerialState`, which has no serde (vm-superio-ser, which adds it, pins
/// vm-superio to 0.8.1).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SavedSerial {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
}

impl Default for SavedSerial {
    fn default() -> Self {
        Self::from_state(&SerialState::default())
    }
}

impl SavedSerial {
    fn from_state(s: &SerialState) -> Self {
        SavedSerial {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }

    fn to_state(&self) -> SerialState {
        SerialState {
            baud_divisor_low: self.baud_divisor_low,
            baud_divisor_high: self.baud_divisor_high,
            interrupt_enable: self.interrupt_enable,
            interrupt_identification: self.interrupt_identification,
            line_control: self.line_control,
            line_status: self.line_status,
            modem_control: self.modem_control,
            modem_status: self.modem_status,
            scratch: self.scratch,
            in_buffer: self.in_buffer.clone(),
        }
    }
}

/// COM1, the i8042 reset line, a port sink and the virtio devices, shared by every vcpu
/// of a VM.
pub struct LegacyDevices {
    serial: Mutex<Serial<EventTrigger, vm_superio::serial::NoEvents, SerialOutput>>,
    i8042: Mutex<I8042Device<EventTrigger>>,
    reset: EventFd,
    output: SerialOutput,
    virtio: RwLock<Vec<Arc<MmioTransport>>>,
    /// The virtio console's input, when the machine's console is hvc0 rather than COM1.
    console: RwLock<Option<Arc<ConsoleInput>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Device state is updated register by register: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LegacyDevices {
    /// Devices for `vm`, whose in-kernel irqchip delivers the UART's interrupts
    /// (through an irqfd).
    pub fn new(vm: &KvmVm) -> Result<Self> {
        Self::with_state(vm, &DeviceState::default())
    }

    /// Devices for `vm` in the state [`LegacyDevices::state`] gave (a restored VM's).
    pub fn with_state(vm: &KvmVm, state: &DeviceState) -> Result<Self> {
        const OP: &str = "devices";
        let irq = EventFd::new(EFD_NONBLOCK).op(OP)?;
        vm.register_irqfd(&irq, SERIAL_IRQ)?;
        let reset = EventFd::new(EFD_NONBLOCK).op(OP)?;
        let output = SerialOutput::default();
        let serial = Serial::from_state(
            &state.serial.to_state(),
            EventTrigger(irq),
            vm_superio::serial::NoEvents,
            output.clone(),
        )
        .map_err(|e| Error::invalid(OP, format!("the saved COM1 state is not valid: {e:?}")))?;
        let devices = LegacyDevices {
            serial: Mutex::new(serial),
            // The i8042 holds no state: it only passes a reset on.
            i8042: Mutex::new(I8042Device::new(EventTrigger(reset.try_clone().op(OP)?))),
            reset,
            output,
            virtio: RwLock::new(Vec::new()),
            console: RwLock::new(None),
        };
        // The virtio devices, opened again and put back as the driver left them.
        for saved in &state.virtio {
            let (device, console) = saved.device.open(Box::new(devices.output.clone()))?;
            devices.attach(Arc::new(MmioTransport::restore(vm, saved, device)?));
            if let Some(input) = console {
                devices.route_input(input);
            }
        }
        Ok(devices)
    }

    /// Puts a virtio device on the MMIO bus.
    pub fn attach(&self, device: Arc<MmioTransport>) {
        self.virtio.write().unwrap_or_else(|p| p.into_inner()).push(device);
    }

    /// Sends console input to a virtio console instead of COM1 from now on.
    pub fn route_input(&self, console: Arc<ConsoleInput>) {
        *self.console.write().unwrap_or_else(|p| p.into_inner()) = Some(console);
    }

    fn console(&self) -> Option<Arc<ConsoleInput>> {
        self.console.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the virtio devices off the bus: their threads stop and what they hold
    /// (image files, sockets) is let go, once no vcpu is using one.
    pub fn close_virtio(&self) {
        self.virtio.write().unwrap_or_else(|p| p.into_inner()).clear();
        *self.console.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How many virtio devices are on the bus.
    pub fn virtio_count(&self) -> usize {
        self.virtio.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// An MMIO access: a virtio device's, or else nothing there (reads all ones, writes
    /// dropped).
    pub fn handle_mmio(&self, p: IoParams) {
        let address = p.address;
        #[cfg(target_arch = "aarch64")]
        {
            use crate::arch::aarch64::layout::{UART_ADDR, UART_SIZE};
            if address.wrapping_sub(UART_ADDR) < UART_SIZE {
                return self.uart_access((address - UART_ADDR) as u8, p.operation);
            }
        }
        let bus = self.virtio.read().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = bus
            .iter()
            .find(|d| address.wrapping_sub(d.base()) < crate::vmm::virtio::MMIO_SIZE)
        {
            d.handle(p);
        } else if let IoOperation::Read(data) = p.operation {
            data.fill(0xff);
        }
    }

    /// The devices' state, for a snapshot; `ENOTSUP` if a virtio device cannot be
    /// saved (one written in JS).
    pub fn state(&self) -> Result<DeviceState> {
        let virtio = self.virtio.read().unwrap_or_else(|p| p.into_inner());
        Ok(DeviceState {
            serial: SavedSerial::from_state(&lock(&self.serial).state()),
            virtio: virtio.iter().map(|t| t.save()).collect::<Result<_>>()?,
        })
    }

    /// The console output.
    pub fn output(&self) -> &SerialOutput {
        &self.output
    }

    /// Queues `bytes` for the guest to read from COM1 (and raises its interrupt). Returns
    /// how many fit in the UART's FIFO.
    pub fn serial_input(&self, bytes: &[u8]) -> Result<usize> {
        if let Some(console) = self.console() {
            return Ok(console.push(bytes));
        }
        lock(&self.serial)
            .enqueue_raw_bytes(bytes)
            .map_err(|e| Error::invalid("serialInput", format!("{e:?}")))
    }

    /// Room left in COM1's input FIFO.
    pub fn serial_input_room(&self) -> usize {
        if let Some(console) = self.console() {
            return console.room();
        }
        lock(&self.serial).fifo_capacity()
    }

    /// True once the guest pulsed the reset line through the i8042 (its reboot or,
    /// with `reboot=k`, power-off path). Reading clears it.
    pub fn reset_requested(&self) -> bool {
        self.reset.read().is_ok()
    }

    /// One access to the UART's register `offset` (its first byte only: the registers
    /// are bytes; past the eighth, nothing is there).
    fn uart_access(&self, offset: u8, operation: IoOperation) {
        match operation {
            // A full output buffer or a failed interrupt loses a byte; never fatal.
            IoOperation::Write(data) if offset < 8 => {
                let _ = lock(&self.serial).write(offset, data[0]);
            }
            IoOperation::Write(_) => {}
            IoOperation::Read(data) => {
                data.fill(0);
                if offset < 8 {
                    data[0] = lock(&self.serial).read(offset);
                }
            }
        }
    }

    /// Handles one port access: COM1, the i8042, or the sink (reads all ones, writes
    /// ignored), which answers the ports a kernel probes for hardware that is absent.
    pub fn handle_io(&self, p: IoParams) {
        let port = p.address;
        if (COM1_BASE..COM1_BASE + 8).contains(&port) {
            return self.uart_access((port - COM1_BASE) as u8, p.operation);
        }
        match p.operation {
            IoOperation::Write(data) => {
                if port == I8042_BASE || port == I8042_BASE + 4 {
                    let _ = lock(&self.i8042).write((port - I8042_BASE) as u8, data[0]);
                }
            }
            IoOperation::Read(data) => {
                if port == I8042_BASE || port == I8042_BASE + 4 {
                    data[0] = lock(&self.i8042).read((port - I8042_BASE) as u8);
                } else {
                    data.fill(0xff);
                }
            }
        }
    }

    /// Runs `vcpu` until something other than port I/O or MMIO happens: both go to the
    /// devices here (MMIO outside a virtio device reads all ones), and an i8042 reset
    /// ends the run as `SystemEventReset`. An interrupted run is `Err(EINTR)`, as from
    /// `run()`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use vcpu_kvm::{Kvm, VmConfig, VcpuExit};
    /// # use vcpu_kvm::vmm::linux::{load_linux, start_linux};
    /// # use vcpu_kvm::vmm::devices::LegacyDevices;
    /// let vm = Kvm::open(None)?.create_vm(VmConfig { irqchip: true, ..VmConfig::default() })?;
    /// vm.add_memory(0, 256 << 20, false, false)?;
    /// let kernel = std::fs::read("bzImage").unwrap();
    /// let boot = load_linux(&vm, &kernel, None, "console=ttyS0 reboot=k", 1, 0)?;
    /// let devices = LegacyDevices::new(&vm)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// start_linux(&vcpu, &boot)?;
    /// assert_eq!(devices.run(&vcpu)?, VcpuExit::SystemEventReset); // the guest rebooted
    /// print!("{}", String::from_utf8_lossy(&devices.output().take()));
    /// # Ok::<(), vcpu_kvm::Error>(())
    /// ```
    pub fn run(&self, vcpu: &KvmVcpu) -> Result<VcpuExit> {
        loop {
            match vcpu.run()? {
                VcpuExit::Io => vcpu.handle_io(&mut |p| self.handle_io(p))?,
                VcpuExit::Mmio => vcpu.handle_mmio(&mut |p| {
                    self.handle_mmio(p);
                    Ok(())
                })?,
                #[cfg(target_arch = "x86_64")]
                VcpuExit::InternalError { suberror: 1 } if vcpu.finish_unemulated_instruction()? => {}
                other => return Ok(other),
            }
            if self.reset_requested() {
                return Ok(VcpuExit::SystemEventReset);
            }
        }
    }
}
