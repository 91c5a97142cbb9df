/**
 * `Vm`: a virtual machine.
 * @packageDocumentation
 */
import { dispose } from './dispose';
import { call, VcpuError } from './errors';
import { GuestMemory, type MemoryOptions } from './memory';
import type { NativeVm } from './native';
import { Vcpu } from './vcpu';

/**
 * A KVM virtual machine: guest memory and vcpus. Made by {@link Kvm.createVm}.
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
  readonly #vcpus = new Set<Vcpu>();

  /** @internal */
  constructor(native: NativeVm) {
    this.#native = native;
  }

  /**
   * Maps fresh zeroed RAM into the guest. Address and size must be multiples of 4096;
   * regions must not overlap (`EEXIST`); they must end below 2^52.
   */
  addMemory(options: MemoryOptions): GuestMemory {
    const { guestAddress, size, readonly = false, dirtyLog = false } = options ?? ({} as MemoryOptions);
    const slot = call('addMemory', () => this.#native.addMemory(guestAddress, size, !!readonly, !!dirtyLog));
    const mem = new GuestMemory(this.#native, slot, { guestAddress, size, readonly: !!readonly, dirtyLog: !!dirtyLog });
    this.#memory.set(slot, mem);
    return mem;
  }

  /** Removes a region: guest accesses there become `Mmio` exits. */
  removeMemory(memory: GuestMemory): void {
    if (!(memory instanceof GuestMemory) || this.#memory.get(memory.slot) !== memory) {
      throw new VcpuError('EINVAL', 'removeMemory', 'removeMemory: not a memory region of this VM (or removed already)');
    }
    call('removeMemory', () => this.#native.removeMemory(memory.slot));
    this.#memory.delete(memory.slot);
    memory.markRemoved();
  }

  /** The regions currently mapped. */
  get memory(): GuestMemory[] {
    return [...this.#memory.values()];
  }

  /** A copy of `length` bytes of guest memory at `gpa` (inside one region). */
  read(gpa: number, length: number): Uint8Array {
    return call('read', () => this.#native.read(gpa, length));
  }

  /** Copies `bytes` into guest memory at `gpa` (inside one region). */
  write(gpa: number, bytes: Uint8Array | ArrayLike<number>): void {
    const data = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes ?? []);
    call('write', () => this.#native.write(gpa, data));
  }

  /** The pages of `memory` the guest wrote since the last call, one bit per page. */
  getDirtyLog(memory: GuestMemory): BigUint64Array {
    return call('getDirtyLog', () => this.#native.getDirtyLog(memory.slot));
  }

  /** Creates vcpu `id`. Run it on the thread that created it. */
  createVcpu(id: number): Vcpu {
    const native = call('createVcpu', () => this.#native.createVcpu(id));
    const vcpu = new Vcpu(native, this);
    this.#vcpus.add(vcpu);
    return vcpu;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /**
   * Closes the VM: its vcpus are kicked out of `run()` and closed, its memory slots
   * released (views already taken stay valid). Idempotent.
   */
  close(): void {
    this.#native.close();
    for (const vcpu of this.#vcpus) vcpu.close();
    this.#vcpus.clear();
    for (const mem of this.#memory.values()) mem.markRemoved();
    this.#memory.clear();
  }

  /** `using vm = …` closes it at the end of the scope. */
  [dispose](): void {
    this.close();
  }

  /** @internal */
  forgetVcpu(vcpu: Vcpu): void {
    this.#vcpus.delete(vcpu);
  }
}
