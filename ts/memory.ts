/**
 * `GuestMemory`: one region of guest RAM.
 * @packageDocumentation
 */
import { call, VcpuError } from './errors';
import type { NativeVm } from './native';

/** Options of {@link Vm.addMemory}. */
export interface MemoryOptions {
  /** Guest physical address of the first byte; a multiple of 4096. */
  guestAddress: number;
  /** Size in bytes; a non-zero multiple of 4096. */
  size: number;
  /** Guest writes become `Mmio` exits and leave the memory unchanged. */
  readonly?: boolean;
  /** Record the pages the guest writes, for {@link Vm.getDirtyLog}. */
  dirtyLog?: boolean;
}

/**
 * A region of guest RAM, mapped into the VM at `guestAddress`.
 *
 * @example
 * ```ts
 * const mem = vm.addMemory({ guestAddress: 0, size: 2 << 20 });
 * mem.bytes.set(code, 0x1000); // zero-copy: the guest sees it at once
 * ```
 */
export class GuestMemory {
  /** The KVM memory slot. */
  readonly slot: number;
  /** Guest physical address of the first byte. */
  readonly guestAddress: number;
  /** Size in bytes. */
  readonly size: number;
  /** Whether the guest sees it read-only. */
  readonly readonly: boolean;
  /** Whether dirty pages are logged. */
  readonly dirtyLog: boolean;
  readonly #vm: NativeVm;
  #bytes: Uint8Array | undefined;
  #removed = false;

  /** @internal */
  constructor(vm: NativeVm, slot: number, options: Required<MemoryOptions>) {
    this.#vm = vm;
    this.slot = slot;
    this.guestAddress = options.guestAddress;
    this.size = options.size;
    this.readonly = options.readonly;
    this.dirtyLog = options.dirtyLog;
  }

  /**
   * A zero-copy `Uint8Array` over the region (one per region, created on first use).
   * It never dangles: once taken, it keeps the host mapping alive after
   * `removeMemory` or `close` (the guest no longer sees it then). Electron's main
   * process forbids such external buffers: there this throws `ENOTSUP`; use
   * `vm.read()`/`vm.write()`, which copy.
   *
   * @example
   * ```ts
   * const ram = vm.addMemory({ guestAddress: 0, size: 2 << 20 });
   * ram.bytes[0x1000] = 0xf4; // hlt, seen by the guest at once
   * ```
   */
  get bytes(): Uint8Array {
    if (this.#bytes) return this.#bytes;
    if (this.#removed || this.#vm.closed) {
      throw new VcpuError('ECLOSED', 'bytes', 'bytes: the memory region was removed or its VM closed');
    }
    const buffer = call('bytes', () => this.#vm.memoryBuffer(this.slot));
    if (buffer === null) {
      throw new VcpuError(
        'ENOTSUP',
        'bytes',
        'bytes: this runtime forbids external ArrayBuffers (Electron memory cage); use vm.read()/vm.write() to copy guest memory',
      );
    }
    this.#bytes = new Uint8Array(buffer);
    return this.#bytes;
  }

  /**
   * True after `vm.removeMemory(this)`.
   *
   * @example
   * ```ts
   * vm.removeMemory(ram);
   * ram.removed; // true
   * ```
   */
  get removed(): boolean {
    return this.#removed;
  }

  /** @internal */
  markRemoved(): void {
    this.#removed = true;
  }
}
