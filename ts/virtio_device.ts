/**
 * virtio devices written in TypeScript: {@link Vm.addVirtioDevice}, and `devices` of
 * {@link bootLinux}. The transport and the queues are native (virtio-mmio, version 2,
 * with rust-vmm's virtio-queue); when the driver notifies a queue, the device's thread
 * takes every available chain, checks each buffer lies in guest RAM, and calls
 * `onNotify` once on the JS thread with them, as views of guest RAM where the runtime
 * allows (copies in Electron).
 * @packageDocumentation
 */
import { call, VcpuError } from './errors';
import type { NativeDevices, NativeVirtioDevice } from './native';
import { checkFunction, objectArg } from './options';
import type { IoParams } from './types';
import type { Vm } from './vm';

/** A virtio device written in TypeScript. */
export interface VirtioDeviceSpec {
  /** Its virtio device id. */
  type: number;
  /** Its feature bits (`VIRTIO_F_VERSION_1` is always offered). */
  features?: bigint;
  /** Its configuration space (read-only to the driver), at most 3840 bytes. */
  config?: Uint8Array;
  /** Each queue's maximum size (a power of two). */
  queues: number[];
  /**
   * The driver notified `queue`: pop its chains, push each back with the bytes written.
   * Runs on the JS thread; a chain not pushed before it returns goes back with 0 bytes.
   */
  onNotify(queue: VirtioQueue): void;
}

/** One request: the driver's buffers, in order. */
export interface VirtioChain {
  /** Driver → device. */
  readonly readable: readonly Uint8Array[];
  /** Device → driver. */
  readonly writable: readonly Uint8Array[];
}

interface Taken extends VirtioChain {
  head: number;
  /** Where each writable buffer is, to copy back (copies only). */
  copies: { gpa: number; bytes: Uint8Array }[] | null;
}

/**
 * A queue during {@link VirtioDeviceSpec.onNotify}.
 *
 * @example
 * ```ts
 * onNotify(queue) {
 *   for (let chain; (chain = queue.pop()); ) queue.push(chain, 0);
 *   queue.interrupt();
 * }
 * ```
 */
export class VirtioQueue {
  /** The queue's index. */
  readonly index: number;
  readonly #chains: Taken[];
  readonly #vm: Vm;
  /** @internal (head, bytes) pairs pushed. */
  readonly results: number[] = [];
  /** @internal */
  interrupted = false;

  /** @internal */
  constructor(index: number, chains: Taken[], vm: Vm) {
    this.index = index;
    this.#chains = chains;
    this.#vm = vm;
  }

  /**
   * The next chain the driver made available, or null.
   *
   * @example
   * ```ts
   * const chain = queue.pop();
   * ```
   */
  pop(): VirtioChain | null {
    return this.#chains.shift() ?? null;
  }

  /**
   * Gives `chain` back to the driver with `bytesWritten` bytes written into its
   * writable buffers.
   *
   * @example
   * ```ts
   * queue.push(chain, 5);
   * ```
   */
  push(chain: VirtioChain, bytesWritten: number): void {
    const taken = chain as Taken;
    const room = taken.writable.reduce((n, b) => n + b.length, 0);
    if (!Number.isInteger(bytesWritten) || bytesWritten < 0 || bytesWritten > room) {
      throw new VcpuError('EINVAL', 'push', `push: bytesWritten must be 0 to ${room}, the chain's writable bytes`);
    }
    let left = bytesWritten;
    for (const c of taken.copies ?? []) {
      const n = Math.min(left, c.bytes.length);
      if (n > 0) this.#vm.write(c.gpa, c.bytes.subarray(0, n));
      left -= n;
    }
    this.results.push(taken.head, bytesWritten);
  }

  /**
   * Interrupts the driver when `onNotify` returns (pushing a chain does too).
   *
   * @example
   * ```ts
   * queue.interrupt();
   * ```
   */
  interrupt(): void {
    this.interrupted = true;
  }
}

/** A virtio device on the MMIO bus. */
export class VirtioDevice {
  /** Its register window's guest address. */
  readonly address: number;
  /** Its interrupt line. */
  readonly irq: number;
  /** The kernel command line entry that announces it (`virtio_mmio.device=4K@ADDR:IRQ`). */
  readonly cmdline: string;
  readonly #native: NativeVirtioDevice;

  /** @internal */
  constructor(native: NativeVirtioDevice) {
    this.#native = native;
    this.address = native.address;
    this.irq = native.irq;
    this.cmdline = native.cmdline;
  }

  /**
   * Serves an MMIO access if it is the device's (a VM whose vcpus you run yourself
   * routes its `Mmio` exits here); false otherwise.
   *
   * @example
   * ```ts
   * vcpu.runUntil({ mmio: (p) => void dev.handleMmio(p) });
   * ```
   */
  handleMmio(p: IoParams): boolean {
    return p.operation === 'read'
      ? this.#native.mmioRead(p.address, p.data)
      : this.#native.mmioWrite(p.address, p.data);
  }

  /**
   * Stops the device.
   *
   * @example
   * ```ts
   * dev.close();
   * ```
   */
  close(): void {
    this.#native.close();
  }
}

const counts = new WeakMap<Vm, number>();

/** @internal `vm.addVirtioDevice`, and bootLinux's `devices` (on its bus, with `devices`). */
export function addVirtioDevice(vm: Vm, spec: VirtioDeviceSpec, devices?: NativeDevices): VirtioDevice {
  const op = 'addVirtioDevice';
  const s = objectArg(op, 'spec', spec) as unknown as VirtioDeviceSpec;
  if (!Number.isInteger(s.type) || s.type < 1 || s.type > 0xffff)
    throw new VcpuError('EINVAL', op, `${op}: type must be a virtio device id (1 to 65535)`);
  if (!Array.isArray(s.queues)) throw new VcpuError('EINVAL', op, `${op}: queues must be an array of queue sizes`);
  const onNotify = checkFunction(op, 'onNotify', s.onNotify);
  const index = counts.get(vm) ?? 0;
  // The callback needs the device it belongs to, which needs the callback.
  const self: { native?: NativeVirtioDevice } = {};
  const callback = (err: Error | null, queue: number): boolean => {
    const native = self.native;
    if (err || !native) return false;
    const q = new VirtioQueue(queue, takeChains(vm, native.takeChains()), vm);
    try {
      onNotify.call(s, q);
    } catch {
      // The device's own bug: the chains go back with what was pushed so far.
    }
    native.complete(Uint32Array.from(q.results), q.interrupted);
    return true;
  };
  const native = call(op, () =>
    vm.native.addVirtioDevice(
      s.type,
      s.features ?? 0n,
      s.config ?? new Uint8Array(0),
      s.queues,
      callback,
      index,
      devices,
    ),
  );
  self.native = native;
  if (!devices) counts.set(vm, index + 1);
  return new VirtioDevice(native);
}

/** The chains of a notification, from the native side's flat numbers. */
function takeChains(vm: Vm, flat: Float64Array): Taken[] {
  const chains: Taken[] = [];
  const views = viewsOf(vm);
  for (let i = 0; i < flat.length;) {
    const [head, nr, nw] = [flat[i], flat[i + 1], flat[i + 2]];
    i += 3;
    const readable: Uint8Array[] = [];
    const writable: Uint8Array[] = [];
    const copies: { gpa: number; bytes: Uint8Array }[] = [];
    for (let k = 0; k < nr + nw; k++, i += 2) {
      const [gpa, len] = [flat[i], flat[i + 1]];
      const view = views?.(gpa, len);
      const bytes = view ?? (k < nr ? vm.read(gpa, len) : new Uint8Array(len));
      if (k < nr) readable.push(bytes);
      else {
        writable.push(bytes);
        if (!view) copies.push({ gpa, bytes });
      }
    }
    chains.push({ head, readable, writable, copies: views ? null : copies });
  }
  return chains;
}

/** A function that views guest RAM in place, or null where the runtime forbids it. */
function viewsOf(vm: Vm): ((gpa: number, len: number) => Uint8Array | undefined) | null {
  try {
    const regions = vm.memory.map((m) => ({ at: m.guestAddress, size: m.size, bytes: m.bytes }));
    return (gpa, len) => {
      const r = regions.find((x) => gpa >= x.at && gpa + len <= x.at + x.size);
      return r?.bytes.subarray(gpa - r.at, gpa - r.at + len);
    };
  } catch {
    return null;
  }
}
