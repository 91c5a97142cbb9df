/**
 * `Vm`: a virtual machine.
 * @packageDocumentation
 */
import { dispose } from './dispose';
import { checkOptions } from './options';
import { call, VcpuError } from './errors';
import { startGdbServer, type GdbServer, type GdbServerOptions } from './gdb';
import { GuestMemory, type MemoryOptions } from './memory';
import { checkPath, keyBytes, type SnapshotInfo, type SnapshotOptions } from './snapshot_options';
import { ioeventArgs, IoEvent, IrqEvent, type IoEventOptions } from './vm_events';
import { addVirtioDevice, type VirtioDevice, type VirtioDeviceSpec } from './virtio_device';
import native, { type NativeVm } from './native';
import type { HostVcpu } from './host_arch';
import type { Vcpu } from './vcpu';
import { VcpuAArch64 } from './vcpu_arm64';
import { VcpuX86_64 } from './vcpu_x86';

/** `bytes` as a Uint8Array: arrays must hold integers from 0 to 255. */
function toBytes(bytes: Uint8Array | ArrayLike<number>): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  const ok =
    bytes !== null &&
    typeof bytes === 'object' &&
    Number.isSafeInteger(bytes.length) &&
    Array.prototype.every.call(
      bytes,
      (b: unknown) => Number.isInteger(b) && (b as number) >= 0 && (b as number) <= 255,
    );
  if (!ok) throw new VcpuError('EINVAL', 'write', 'write: bytes must be a Uint8Array or an array of integers 0-255');
  return Uint8Array.from(bytes);
}

/** Plain data naming a VM: send it to a worker with `postMessage`, open it with {@link Vm.fromHandle}. */
export interface VmHandle {
  /** Process-wide number of the VM. */
  readonly id: number;
}

/**
 * A KVM virtual machine: guest memory and vcpus. Made by {@link Kvm.createVm}, or in
 * another worker by {@link Vm.fromHandle}.
 *
 * @example
 * ```ts
 * using vm = Kvm.open().createVm();
 * vm.addMemory({ guestAddress: 0, size: 2 << 20 });
 * vm.write(0x1000, new Uint8Array([0xf4])); // hlt
 * const vcpu = vm.createVcpu(0);
 * ```
 */
export class Vm {
  readonly #native: NativeVm;
  readonly #memory = new Map<number, GuestMemory>();
  readonly #vcpus = new Set<Vcpu<object>>();

  /** @internal */
  constructor(native: NativeVm) {
    this.#native = native;
  }

  /**
   * The same VM in this thread (a worker): same guest memory, same KVM VM. Create the
   * vcpus this thread runs here. `ECLOSED` once the VM is closed.
   *
   * @example
   * ```ts
   * // main thread
   * new Worker('./cpu1.js', { workerData: { vm: vm.handle } });
   * // cpu1.js
   * const vm = Vm.fromHandle(workerData.vm);
   * const vcpu = vm.createVcpu(1);
   * ```
   */
  static fromHandle(handle: VmHandle | number): Vm {
    const id = typeof handle === 'number' ? handle : handle?.id;
    return new Vm(call('Vm.fromHandle', () => native.NativeVm.fromHandle(id as number)));
  }

  /**
   * Plain data naming this VM, for {@link Vm.fromHandle} in another worker.
   *
   * @example
   * ```ts
   * new Worker('./cpu.js', { workerData: { vm: vm.handle } });
   * ```
   */
  get handle(): VmHandle {
    return Object.freeze({ id: call('handle', () => this.#native.handle) });
  }

  /**
   * Maps fresh zeroed RAM into the guest. Address and size must be multiples of 4096;
   * regions must not overlap (`EEXIST`); they must end below 2^52.
   *
   * @example
   * ```ts
   * const ram = vm.addMemory({ guestAddress: 0, size: 2 << 20 });
   * const rom = vm.addMemory({ guestAddress: 0xfff00000, size: 1 << 20, readonly: true });
   * ```
   */
  addMemory(options: MemoryOptions): GuestMemory {
    const o = checkOptions<MemoryOptions>('addMemory', options, ['guestAddress', 'size', 'readonly', 'dirtyLog']);
    const { guestAddress, size, readonly = false, dirtyLog = false } = o;
    const slot = call('addMemory', () => this.#native.addMemory(guestAddress, size, !!readonly, !!dirtyLog));
    const mem = new GuestMemory(this.#native, slot, { guestAddress, size, readonly: !!readonly, dirtyLog: !!dirtyLog });
    this.#memory.set(slot, mem);
    return mem;
  }

  /**
   * Removes a region: guest accesses there become `Mmio` exits.
   *
   * @example
   * ```ts
   * vm.removeMemory(rom); // guest accesses there are now Mmio exits
   * ```
   */
  removeMemory(memory: GuestMemory): void {
    if (!(memory instanceof GuestMemory) || this.#memory.get(memory.slot) !== memory) {
      throw new VcpuError(
        'EINVAL',
        'removeMemory',
        'removeMemory: not a memory region of this VM (or removed already)',
      );
    }
    call('removeMemory', () => this.#native.removeMemory(memory.slot));
    this.#memory.delete(memory.slot);
    memory.markRemoved();
  }

  /**
   * The regions currently mapped (also those another thread added).
   *
   * @example
   * ```ts
   * for (const m of vm.memory) console.log(m.guestAddress.toString(16), m.size);
   * ```
   */
  get memory(): GuestMemory[] {
    const regions = this.#native.closed ? [] : this.#native.regions();
    const present = new Set(regions.map((r) => r.slot));
    for (const [slot, mem] of this.#memory) {
      if (!present.has(slot)) {
        mem.markRemoved();
        this.#memory.delete(slot);
      }
    }
    for (const r of regions) {
      if (!this.#memory.has(r.slot)) this.#memory.set(r.slot, new GuestMemory(this.#native, r.slot, r));
    }
    return [...this.#memory.values()];
  }

  /**
   * A copy of `length` bytes of guest memory at `gpa` (inside one region).
   *
   * @example
   * ```ts
   * const header = vm.read(0x7000, 512);
   * ```
   */
  read(gpa: number, length: number): Uint8Array {
    return call('read', () => this.#native.read(gpa, length));
  }

  /**
   * Copies `bytes` into guest memory at `gpa` (inside one region).
   *
   * @example
   * ```ts
   * vm.write(0x1000, [0xf4]); // hlt
   * ```
   */
  write(gpa: number, bytes: Uint8Array | ArrayLike<number>): void {
    call('write', () => this.#native.write(gpa, toBytes(bytes)));
  }

  /**
   * The pages of `memory` the guest wrote since the last call, one bit per page.
   *
   * @example
   * ```ts
   * const ram = vm.addMemory({ guestAddress: 0, size: 2 << 20, dirtyLog: true });
   * // ... run the guest ...
   * const dirty = vm.getDirtyLog(ram); // bit n of word n / 64: page n was written
   * ```
   */
  getDirtyLog(memory: GuestMemory): BigUint64Array {
    return call('getDirtyLog', () => this.#native.getDirtyLog(memory.slot));
  }

  /**
   * `KVM_ENABLE_CAP` on the VM. Unsafe for capabilities whose arguments are host
   * pointers: the kernel dereferences them.
   *
   * @example
   * ```ts
   * vm.enableCapability(KVM_CAP_X86_USER_SPACE_MSR, [2n, 0n, 0n, 0n]); // unknown MSRs exit
   * ```
   */
  enableCapability(cap: number, args: readonly [bigint, bigint, bigint, bigint] = [0n, 0n, 0n, 0n]): void {
    call('enableCapability', () => this.#native.enableCapability(cap, [...args]));
  }

  /**
   * Creates vcpu `id`. Run it on the thread that created it. In a VM restored from a
   * snapshot, a saved id ({@link Vm.snapshotVcpuIds}) comes back with all its state.
   *
   * @example
   * ```ts
   * const vcpu = vm.createVcpu(0);
   * ```
   */
  createVcpu(id: number): HostVcpu {
    const native = call('createVcpu', () => this.#native.createVcpu(id));
    // The host's own kind of vcpu, with exactly its architecture's methods.
    const vcpu = process.arch === 'arm64' ? new VcpuAArch64(native, this) : new VcpuX86_64(native, this);
    this.#vcpus.add(vcpu);
    return vcpu as unknown as HostVcpu;
  }

  /**
   * Writes the whole VM to one file at `path` (replacing it atomically): its options and
   * memory layout, guest memory (pages that are all zero are not written), irqchip, PIT
   * and clock, and every vcpu's state. Every vcpu must be outside `run()` with no exit
   * waiting for its `handle*()` call, else `EBUSY`; they are kept out of `run()` while
   * it writes. `diff: true` writes only the pages written since this VM's previous
   * snapshot or restore, naming that file as its base (`EINVAL` if there is none).
   * `key` signs the file: {@link Kvm.restoreVm} with the same key then refuses any
   * change to it.
   *
   * @example
   * ```ts
   * const { bytes, pages } = vm.snapshot('/tmp/booted.snap');
   * // … the guest runs on …
   * vm.snapshot('/tmp/later.snap', { diff: true }); // only what changed since
   * vm.snapshot('/tmp/signed.snap', { key: process.env.SNAPSHOT_KEY });
   * ```
   */
  snapshot(path: string, options: SnapshotOptions = {}): SnapshotInfo {
    const { diff = false, key } = checkOptions<SnapshotOptions>('snapshot', options, ['diff', 'key']);
    checkPath('snapshot', path);
    const bytes = keyBytes('snapshot', key);
    return call('snapshot', () => this.#native.snapshot(path, !!diff, bytes));
  }

  /**
   * Registers an ioevent (`KVM_IOEVENTFD`): guest writes to `address` (a port with
   * `port: true`) of `length` bytes (0: any), and of value `datamatch` if given,
   * complete in the kernel without an exit and are counted on the returned
   * {@link IoEvent}. `EINVAL` for a bad length, a datamatch that does not fit it, or a
   * port above 0xffff; `EEXIST` for the same address, length and datamatch twice.
   *
   * @example
   * ```ts
   * const doorbell = vm.registerIoevent({ address: 0x700, length: 1, port: true });
   * await doorbell.wait(); // the guest's `out 0x700, al` never left the kernel
   * ```
   */
  registerIoevent(options: IoEventOptions): IoEvent {
    const args = ioeventArgs(options);
    return new IoEvent(call('registerIoevent', () => this.#native.registerIoevent(args)));
  }

  /**
   * Registers an irqfd (`KVM_IRQFD`) for interrupt line `gsi` of the in-kernel irqchip
   * (`createVm({ irqchip: true })`): {@link IrqEvent.trigger} raises it.
   *
   * @example
   * ```ts
   * const irq = vm.registerIrqfd(10);
   * irq.trigger();
   * ```
   */
  registerIrqfd(gsi: number): IrqEvent {
    return new IrqEvent(call('registerIrqfd', () => this.#native.registerIrqfd(gsi)));
  }

  /**
   * A virtio device (virtio-mmio, version 2) whose queues `spec.onNotify` serves, in
   * the VM's next device slot (4 KiB windows from 0xd0000000, interrupt lines from 5;
   * needs `createVm({ irqchip: true })`). A VM whose vcpus you run yourself routes the
   * device's `Mmio` exits to {@link VirtioDevice.handleMmio}; a guest Linux finds it
   * with {@link VirtioDevice.cmdline} on its command line. While it lives, guest RAM is
   * viewed in place, so the VM counts every page as written (diffs and resets are whole).
   *
   * @example
   * ```ts
   * const dev = vm.addVirtioDevice({ type: 42, queues: [16], onNotify(q) { … } });
   * vcpu.runUntil({ mmio: (p) => void dev.handleMmio(p) });
   * ```
   */
  addVirtioDevice(spec: VirtioDeviceSpec): VirtioDevice {
    return addVirtioDevice(this, spec);
  }

  /**
   * Sets interrupt line `gsi` of the in-kernel irqchip high or low (`KVM_IRQ_LINE`).
   *
   * @example
   * ```ts
   * vm.setIrqLine(10, true);
   * vm.setIrqLine(10, false);
   * ```
   */
  setIrqLine(gsi: number, level: boolean): void {
    call('setIrqLine', () => this.#native.setIrqLine(gsi, level === true));
  }

  /**
   * Marks the VM as it is now as its reset point, for {@link Vm.reset}: guest memory,
   * the VM's devices and every vcpu's state. Every vcpu must be outside `run()` with no
   * exit waiting (else `EBUSY`). It keeps a copy of each page that holds data (a sparse
   * guest keeps little). A VM restored from a (full) snapshot has that snapshot as its
   * reset point already.
   *
   * @example
   * ```ts
   * vm.markResetPoint(); // after the guest's initialisation
   * ```
   */
  markResetPoint(): void {
    call('markResetPoint', () => this.#native.markResetPoint());
  }

  /**
   * Returns the VM to its reset point ({@link Vm.markResetPoint}, or the snapshot it was
   * restored from) in place, without a new VM: only the pages written since are put
   * back (KVM's dirty log and the host's writes), and the VM's devices and every vcpu's
   * registers come back. Every vcpu must be outside `run()` (else `EBUSY`); an exit
   * waiting for its handler is dropped. `EINVAL` without a reset point or after the
   * memory layout changed; `ENOTSUP` for a VM restored from a diff snapshot.
   *
   * @example
   * ```ts
   * vcpu.runUntil(handlers); // the guest writes what it likes
   * vm.reset();              // and it is gone
   * ```
   */
  reset(): void {
    call('reset', () => this.#native.reset());
  }

  /**
   * Whether the VM has a reset point.
   *
   * @example
   * ```ts
   * kvm.restoreVm('/tmp/ready.snap').hasResetPoint; // true
   * ```
   */
  get hasResetPoint(): boolean {
    return this.#native.hasResetPoint;
  }

  /**
   * Serves the GDB remote protocol for this VM on a native thread (the `gdbstub`
   * crate), whatever loop runs its vcpus (`run()`, `runUntil`, `runAsync`, the Linux
   * device loop) on any thread. While gdb is attached, breakpoint and single-step exits
   * are the stub's and never reach your code; when gdb stops the guest every vcpu is
   * held inside `run()` until it continues. vcpus are gdb's threads (vcpu 0 is thread
   * 1); memory is by guest virtual address. `break`, `hbreak` and `watch` share the
   * four debug registers. Detach lets the guest run on with your own `setGuestDebug`
   * settings back; `kill` closes the VM.
   *
   * @example
   * ```ts
   * const gdb = vm.gdbServer({ port: 1234, wait: true });
   * // $ gdb vmlinux -ex 'target remote 127.0.0.1:1234'
   * ```
   */
  gdbServer(options: GdbServerOptions = {}): GdbServer {
    return startGdbServer(this.#native, options);
  }

  /**
   * The vcpu ids saved in the snapshot this VM was restored from (`[]` for a VM not
   * restored): {@link Vm.createVcpu} with one of them brings that vcpu back.
   *
   * @example
   * ```ts
   * const vm = kvm.restoreVm('/tmp/booted.snap');
   * const vcpus = vm.snapshotVcpuIds.map((id) => vm.createVcpu(id));
   * ```
   */
  get snapshotVcpuIds(): number[] {
    return call('snapshotVcpuIds', () => this.#native.snapshotVcpuIds);
  }

  /**
   * True once closed.
   *
   * @example
   * ```ts
   * vm.close();
   * vm.closed; // true
   * ```
   */
  get closed(): boolean {
    return this.#native.closed;
  }

  /**
   * Closes the VM: its vcpus are kicked out of `run()` and closed, its memory slots
   * released (views already taken stay valid). Idempotent.
   *
   * @example
   * ```ts
   * vm.close();
   * vm.close(); // idempotent
   * ```
   */
  close(): void {
    this.#native.close();
    for (const vcpu of this.#vcpus) vcpu.close();
    this.#vcpus.clear();
    for (const mem of this.#memory.values()) mem.markRemoved();
    this.#memory.clear();
  }

  /** The binding, for the package's own helpers. @internal */
  get native(): NativeVm {
    return this.#native;
  }

  /** `using vm = …` closes it at the end of the scope. */
  [dispose](): void {
    this.close();
  }

  /** @internal */
  forgetVcpu(vcpu: Vcpu<object>): void {
    this.#vcpus.delete(vcpu);
  }
}
