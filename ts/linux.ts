/**
 * Booting Linux: {@link bootLinux} loads a kernel the way Firecracker and Cloud
 * Hypervisor do (rust-vmm's linux-loader) and runs it with a serial console.
 * @packageDocumentation
 */
import { Readable, Writable } from 'node:stream';

import { call, VcpuError } from './errors';
import { bytesOf, checkOptions, parseSize } from './options';
import { Kvm } from './kvm';
import native from './native';
import type { LinuxBootInfo, NativeDevices } from './native';
import type { VcpuExit } from './types';
import { exitFor } from './exit';
import type { HostVcpu } from './host_arch';
import { internalsOf } from './vcpu';
import type { GdbServer, GdbServerOptions } from './gdb';
import { checkPath, keyBytes, type RestoreOptions, type SnapshotInfo, type SnapshotOptions } from './snapshot_options';
import type { Vm } from './vm';
import { attachVirtio, virtioSpecs, type DiskOptions, type NetOptions } from './linux_devices';
import { loadableKernel } from './kernel_image';
import type { VsockHost, VsockOptions } from './vsock';
import type { VirtioDevice, VirtioDeviceSpec } from './virtio_device';

export type { DiskOptions, NetOptions } from './linux_devices';

/**
 * The command line a kernel gets unless told otherwise: the serial console; on x86 no
 * PCI and a quiet i8042 (whose reset line ends the machine: `reboot=k`), on arm64 the
 * early console on the same UART.
 */
export const DEFAULT_CMDLINE =
  process.arch === 'arm64'
    ? 'console=ttyS0 earlycon panic=1'
    : 'console=ttyS0 reboot=k panic=1 pci=off nomodule 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd';

/** Options of {@link bootLinux}. */
export interface LinuxOptions {
  /**
   * The kernel, its bytes or a file path: on x86 a bzImage or an ELF vmlinux; on arm64
   * an `Image`, gzip compressed or not, or an EFI zboot image with a gzip payload (what
   * distributions ship).
   */
  kernel: Uint8Array | string;
  /** An initrd/initramfs: its bytes, or a file path. */
  initrd?: Uint8Array | string;
  /** The kernel command line (default {@link DEFAULT_CMDLINE}). */
  cmdline?: string;
  /** Guest RAM: bytes, or a size such as `'512M'` or `'1G'` (default 512 MiB). */
  memory?: number | string;
  /** Virtual CPUs (default 1), described to the kernel by an MP table and ACPI tables (x86) or the device tree (arm64). */
  cpus?: number;
  /**
   * Serve the GDB remote protocol for the machine ({@link Vm.gdbServer}); its port is
   * in {@link LinuxMachine.gdb}. `wait: true` holds the kernel at its entry until gdb
   * continues.
   */
  gdb?: GdbServerOptions;
  /** virtio-blk disks over raw image files, in order `/dev/vda`, `/dev/vdb`, … */
  disks?: DiskOptions[];
  /** A virtio-rng device fed by the host's `getrandom` (default false). */
  rng?: boolean;
  /**
   * A virtio-vsock device for guest context id `cid`, its host side on the UNIX socket
   * `uds` with Firecracker's convention (see {@link LinuxMachine.vsock}).
   */
  vsock?: VsockOptions;
  /** virtio-net interfaces, each over a tap device. */
  net?: NetOptions[];
  /**
   * `'serial'` (COM1, the default) or `'virtio'`: a virtio console (hvc0) carries
   * {@link LinuxMachine.output} and {@link LinuxMachine.input}, and the default command
   * line says `console=hvc0`.
   */
  console?: 'serial' | 'virtio';
  /** virtio devices written in TypeScript (see {@link Vm.addVirtioDevice}), placed and announced like the others. */
  devices?: VirtioDeviceSpec[];
}

/**
 * A Linux guest: its VM, its vcpus, and its serial console as streams.
 *
 * @example
 * ```ts
 * const linux = bootLinux({ kernel: 'bzImage', initrd: 'initrd.cpio', memory: '256M' });
 * linux.output.pipe(process.stdout);
 * process.stdin.pipe(linux.input);
 * const exit = await linux.start(); // { kind: 'SystemEventReset' } once the guest powers off
 * linux.close();
 * ```
 */
export class LinuxMachine {
  /** The VM. */
  readonly vm: Vm;
  /** The boot vcpu (`vcpus[0]`). */
  readonly vcpu: HostVcpu;
  /** Every vcpu; the others wait for the kernel to start them (x86: INIT/SIPI; arm64: PSCI CPU_ON). */
  readonly vcpus: readonly HostVcpu[];
  /** Where the kernel was loaded. */
  readonly boot: LinuxBootInfo;
  /** What the guest writes to its serial console (COM1). */
  readonly output: Readable;
  /** What the guest reads from its serial console. */
  readonly input: Writable;
  /** The GDB stub, if {@link LinuxOptions.gdb} asked for one (closed with the machine). */
  readonly gdb: GdbServer | undefined;
  /** The vsock device's host side, if {@link LinuxOptions.vsock} asked for one. */
  readonly vsock: VsockHost | undefined;
  readonly #devices: NativeDevices;
  /** The virtio devices written in TypeScript, closed with the machine. */
  readonly #jsDevices: VirtioDevice[];
  /** Input the UART has not taken yet, and the write to complete once it has. */
  #pending: { bytes: Buffer; done: () => void }[] = [];
  #running = false;
  #outputEnded = false;

  /** @internal */
  constructor(
    vm: Vm,
    vcpus: HostVcpu[],
    boot: LinuxBootInfo,
    devices: NativeDevices,
    gdb?: GdbServer,
    vsock?: VsockHost,
    jsDevices: VirtioDevice[] = [],
  ) {
    this.#jsDevices = jsDevices;
    this.vm = vm;
    this.gdb = gdb;
    this.vsock = vsock;
    this.vcpus = Object.freeze([...vcpus]);
    this.vcpu = vcpus[0];
    this.boot = boot;
    this.#devices = devices;
    this.output = new Readable({ read() {} });
    // A write completes once the UART has taken it, so `write()` returns false (and
    // pipes pause) while the guest is not reading: input never piles up in memory.
    this.input = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.#pending.push({ bytes: Buffer.from(chunk), done: () => done() });
        this.#pump();
      },
    });
  }

  /** Feeds queued input to the UART as fast as its FIFO takes it. */
  #pump(): void {
    while (this.#pending.length > 0) {
      const head = this.#pending[0];
      let taken = 0;
      try {
        taken = this.#devices.input(head.bytes);
      } catch {
        // The VM is gone: input goes nowhere, and every write completes.
        for (const p of this.#pending.splice(0)) p.done();
        return;
      }
      if (taken < head.bytes.length) {
        head.bytes = head.bytes.subarray(taken);
        setTimeout(() => this.#pump(), 5).unref();
        return;
      }
      this.#pending.shift();
      head.done();
    }
  }

  #drain(): void {
    const chunk = this.#devices.takeOutput();
    if (chunk.length > 0) this.output.push(chunk);
  }

  /**
   * Runs the guest, each vcpu on a native thread of its own (the event loop stays
   * free), until one powers off or reboots (`SystemEventReset`, through the i8042),
   * shuts down or otherwise stops, or the guest is stopped (`Intr`); then stops the
   * others. The console streams meanwhile. After {@link stop} (`Intr`) the machine can
   * be snapshotted and started again, continuing where it was; otherwise the guest is
   * done and `output` ends (it also ends at {@link close}).
   *
   * @example
   * ```ts
   * const exit = await linux.start();
   * if (exit.kind === 'SystemEventReset') console.log('the guest powered off');
   * ```
   */
  async start(): Promise<VcpuExit> {
    if (this.#running) throw new VcpuError('EBUSY', 'start', 'start: the machine is already running');
    this.#running = true;
    // A previous stop() left each vcpu's immediate exit set: this run is wanted.
    for (const v of this.vcpus) v.setImmediateExit(false);
    const poll = setInterval(() => this.#drain(), 10);
    let exit: VcpuExit | undefined;
    try {
      const runs = this.vcpus.map((v) => {
        const { native, thread } = internalsOf(v);
        return thread.start(
          'runDevices',
          (callback) => native.runDevices(this.#devices, callback),
          (code) => exitFor(code, native),
        );
      });
      exit = await Promise.race(runs);
      this.stop();
      await Promise.allSettled(runs);
      return exit;
    } finally {
      this.#running = false;
      clearInterval(poll);
      this.#drain();
      // Stopped (Intr), the machine can start again; otherwise the guest is done.
      if (exit?.kind !== 'Intr') this.#endOutput();
    }
  }

  #endOutput(): void {
    if (!this.output.readableEnded && !this.#outputEnded) this.output.push(null);
    this.#outputEnded = true;
  }

  /**
   * Writes the machine to one file while it is stopped (not inside {@link start}, else
   * `EBUSY`): the VM as {@link Vm.snapshot} does, with the serial port's and the
   * i8042's state and where the kernel was loaded, so that {@link restoreLinux} (in
   * this or another process) continues it, console and all. Console output not yet
   * read is pushed to {@link output} first.
   *
   * @example
   * ```ts
   * setTimeout(() => linux.stop(), 5000);
   * await linux.start();
   * linux.snapshot('/tmp/linux.snap');
   * ```
   */
  snapshot(path: string, options: SnapshotOptions = {}): SnapshotInfo {
    const { diff = false, key } = checkOptions<SnapshotOptions>('snapshot', options, ['diff', 'key']);
    checkPath('snapshot', path);
    const bytes = keyBytes('snapshot', key);
    if (this.#running) {
      throw new VcpuError(
        'EBUSY',
        'snapshot',
        'snapshot: the machine is running; stop() it and wait for start() first',
      );
    }
    this.#drain();
    return call('snapshot', () => this.vm.native.snapshotLinux(path, !!diff, this.#devices, this.boot, bytes));
  }

  /**
   * Stops the guest: `start()` resolves with `Intr`.
   *
   * @example
   * ```ts
   * setTimeout(() => linux.stop(), 60_000); // a time limit
   * ```
   */
  stop(): void {
    for (const v of this.vcpus) v.signalHandle().signalImmediateExit();
  }

  /**
   * Closes the VM.
   *
   * @example
   * ```ts
   * linux.close();
   * ```
   */
  close(): void {
    this.gdb?.close();
    this.vsock?.close();
    this.vm.close();
    this.#devices.closeVirtio();
    for (const d of this.#jsDevices) d.close();
    this.#endOutput();
  }
}

/**
 * A {@link LinuxMachine} restored from {@link LinuxMachine.snapshot}'s file, in this or
 * another process: the guest continues where it stopped when {@link LinuxMachine.start}
 * runs it, and its console with it. A snapshot of a plain VM (not `bootLinux`) or a bad
 * file throws `EINVAL` saying which. `gdb`: a GDB stub, as in {@link bootLinux}; `key`:
 * the file must be signed with it (see {@link Kvm.restoreVm}).
 *
 * @example
 * ```ts
 * const linux = restoreLinux('/tmp/linux.snap');
 * linux.output.pipe(process.stdout);
 * process.stdin.pipe(linux.input);
 * await linux.start();
 * ```
 */
export function restoreLinux(path: string, options: { gdb?: GdbServerOptions } & RestoreOptions = {}): LinuxMachine {
  checkPath('restoreLinux', path);
  const { gdb, key } = checkOptions<{ gdb?: GdbServerOptions } & RestoreOptions>('restoreLinux', options, [
    'gdb',
    'key',
  ]);
  const kvm = Kvm.open();
  const vm = (() => {
    try {
      return kvm.restoreVm(path, { key });
    } finally {
      kvm.close();
    }
  })();
  try {
    const boot = call('restoreLinux', () => vm.native.restoredBoot());
    const vcpus = vm.snapshotVcpuIds.map((id) => vm.createVcpu(id));
    const devices = call('restoreLinux', () => vm.native.restoreDevices());
    const server = gdb === undefined ? undefined : vm.gdbServer(gdb);
    return new LinuxMachine(vm, vcpus, boot, devices, server);
  } catch (e) {
    vm.close();
    throw e;
  }
}

/**
 * Loads a Linux kernel following the host architecture's boot protocol and puts the
 * boot vcpu at its entry; the others wait for the kernel to start them. On x86: the zero
 * page with the setup header, e820 map, command line and initrd, page tables and a GDT,
 * an MP table and ACPI tables, a 16550A UART on COM1 and the i8042 reset line. On arm64: the `Image` at
 * the start of RAM (2 GiB up), the initrd, and a device tree describing the memory, the
 * cpus (PSCI), the GIC, the timer, a 16550A UART on MMIO and the virtio devices. The VM
 * has the in-kernel irqchip, and the UART is emulated in the exit path. Call
 * {@link LinuxMachine.start} to run it. Bad images (truncated, not a kernel, too big for
 * the memory) throw a `VcpuError` saying which.
 */
export function bootLinux(options: LinuxOptions): LinuxMachine {
  const o = checkOptions<LinuxOptions>('bootLinux', options, [
    'kernel',
    'initrd',
    'cmdline',
    'memory',
    'cpus',
    'gdb',
    'disks',
    'rng',
    'vsock',
    'net',
    'console',
    'devices',
  ]);
  const virtio = virtioSpecs('bootLinux', o);
  const { kernel, initrd, memory = '512M', cpus = 1, gdb } = o;
  const cmdline =
    o.cmdline ?? (o.console === 'virtio' ? DEFAULT_CMDLINE.replace('console=ttyS0', 'console=hvc0') : DEFAULT_CMDLINE);
  if (kernel === undefined) throw new VcpuError('EINVAL', 'bootLinux', 'bootLinux: a kernel is required');
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 254) {
    throw new VcpuError('EINVAL', 'bootLinux', `bootLinux: cpus must be 1 to 254, got ${cpus}`);
  }
  const kernelBytes = loadableKernel('bootLinux', bytesOf('bootLinux', 'kernel', kernel));
  const initrdBytes = initrd === undefined ? undefined : bytesOf('bootLinux', 'initrd', initrd);
  const size = parseSize(memory, 'bootLinux');
  if (size < 16 << 20) throw new VcpuError('EINVAL', 'bootLinux', 'bootLinux: give the guest at least 16M of memory');
  const vm = Kvm.open().createVm({ irqchip: true, hypercallPort: null });
  try {
    vm.addMemory({ guestAddress: native.linuxRamStart(), size });
    const boot = call('loadLinux', () => vm.native.loadLinux(kernelBytes, initrdBytes, cmdline, cpus, virtio.length));
    // Every vcpu before the devices: wiring their interrupts completes arm64's GIC.
    const vcpus = Array.from({ length: cpus }, (_, id) => vm.createVcpu(id));
    for (const v of vcpus) call('startLinux', () => internalsOf(v).native.startLinux(boot));
    const devices = call('bootLinux', () => vm.native.createDevices());
    const { vsock, jsDevices } = attachVirtio(vm, devices, virtio);
    const server = gdb === undefined ? undefined : vm.gdbServer(gdb);
    return new LinuxMachine(vm, vcpus, boot, devices, server, vsock, jsDevices);
  } catch (e) {
    vm.close();
    throw e;
  }
}
