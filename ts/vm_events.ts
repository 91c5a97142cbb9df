/**
 * The crosvm `Vm` device surface: ioevents (a guest write completes in the kernel, no
 * exit, and is counted), irqfds (raising an interrupt line from any code) and irq lines.
 * Made by {@link Vm.registerIoevent} and {@link Vm.registerIrqfd}.
 * @packageDocumentation
 */
import { call, toVcpuError, VcpuError } from './errors';
import { checkOptions } from './options';
import type { NativeIoEvent, NativeIrqEvent } from '../native/index';

/** What {@link Vm.registerIoevent} watches. */
export interface IoEventOptions {
  /** A guest physical address, or a port with `port: true`. */
  address: number;
  /** The access width it matches: 1, 2, 4 or 8 bytes, or 0 for any. */
  length: 0 | 1 | 2 | 4 | 8;
  /** Only writes of this value (needs a `length` it fits in). */
  datamatch?: bigint;
  /** Port I/O rather than MMIO (default false). */
  port?: boolean;
}

/** `options` checked, as the native call takes them. @internal */
export function ioeventArgs(options: unknown): { address: number; length: number; datamatch?: bigint; port: boolean } {
  const { address, length, datamatch, port } = checkOptions<IoEventOptions>('registerIoevent', options, [
    'address',
    'length',
    'datamatch',
    'port',
  ]);
  if (datamatch !== undefined && typeof datamatch !== 'bigint') {
    throw new VcpuError('EINVAL', 'registerIoevent', 'registerIoevent: datamatch must be a bigint');
  }
  return { address, length, datamatch, port: port === true };
}

/** An ioevent (`KVM_IOEVENTFD`): counts the guest's matching writes, which cause no exit. */
export class IoEvent {
  readonly #native: NativeIoEvent;

  /** @internal */
  constructor(native: NativeIoEvent) {
    this.#native = native;
  }

  /**
   * Resolves with the number of matching writes since the last `wait` or `count`, once
   * there is at least one (through libuv's thread pool: the event loop stays free).
   * Rejects with `ECLOSED` after {@link IoEvent.close}.
   *
   * @example
   * ```ts
   * const doorbell = vm.registerIoevent({ address: 0xd000_0000, length: 4 });
   * const writes = await doorbell.wait();
   * ```
   */
  async wait(): Promise<number> {
    try {
      return await this.#native.wait();
    } catch (e) {
      // The native wait rejects with this message once the ioevent is closed.
      if ((e as Error)?.message === 'ECLOSED') throw new VcpuError('ECLOSED', 'wait', 'wait: the ioevent is closed');
      throw toVcpuError(e, 'wait');
    }
  }

  /**
   * The number of matching writes since the last `wait` or `count` (0 if none), at once.
   *
   * @example
   * ```ts
   * if (doorbell.count() > 0) serviceQueue();
   * ```
   */
  count(): number {
    return this.#native.count();
  }

  /**
   * Stops watching: the guest's writes exit to user space again. Idempotent.
   *
   * @example
   * ```ts
   * doorbell.close();
   * ```
   */
  close(): void {
    this.#native.close();
  }
}

/** An irqfd (`KVM_IRQFD`): raises an interrupt line of the in-kernel irqchip. */
export class IrqEvent {
  readonly #native: NativeIrqEvent;

  /** @internal */
  constructor(native: NativeIrqEvent) {
    this.#native = native;
  }

  /**
   * Raises the line once (an edge), from this thread, while a vcpu runs elsewhere.
   *
   * @example
   * ```ts
   * vm.registerIrqfd(10).trigger();
   * ```
   */
  trigger(): void {
    call('trigger', () => this.#native.trigger());
  }

  /**
   * Unregisters the irqfd. Idempotent.
   *
   * @example
   * ```ts
   * irq.close();
   * ```
   */
  close(): void {
    this.#native.close();
  }
}
