/**
 * `Kvm`: the KVM device.
 * @packageDocumentation
 */
import { dispose } from './dispose';
import { checkOptions } from './options';
import { call } from './errors';
import native, { type NativeKvm } from './native';
import type { CpuidEntry } from './types';
import { checkPath, keyBytes, type RestoreOptions } from './snapshot_options';
import { Vm } from './vm';

/** The hypercall port a VM uses unless {@link VmOptions.hypercallPort} says otherwise. */
export const DEFAULT_HYPERCALL_PORT: number = native.defaultHypercallPort();

/** Options of {@link Kvm.createVm}. */
export interface VmOptions {
  /**
   * Create the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT. Off by default, so
   * `hlt` exits to userspace as `Hlt`.
   */
  irqchip?: boolean;
  /**
   * The port of the port-I/O hypercall ABI (default {@link DEFAULT_HYPERCALL_PORT});
   * `null` turns it off, and every port is plain `Io`. On arm64, where hypercalls are
   * SMCCC calls, `null` leaves every SMCCC call to KVM (as `bootLinux` does).
   */
  hypercallPort?: number | null;
  /**
   * x86: a guest's `rdmsr`/`wrmsr` of an MSR KVM does not know exits as
   * `{ kind: 'MsrAccess' }` (`KVM_CAP_X86_USER_SPACE_MSR`) for
   * {@link VcpuX86_64.handleMsr}, instead of giving the guest #GP. Off by default.
   */
  userspaceMsr?: boolean;
}

/**
 * An open `/dev/kvm`.
 *
 * @example
 * ```ts
 * const kvm = Kvm.open();
 * console.log(kvm.apiVersion); // 12
 * const vm = kvm.createVm();
 * ```
 */
export class Kvm {
  readonly #native: NativeKvm;

  private constructor(n: NativeKvm) {
    this.#native = n;
  }

  /**
   * Opens the KVM device (default `/dev/kvm`). Missing device: `ENOENT`, permission
   * denied: `EACCES`; the message says what to do.
   *
   * @example
   * ```ts
   * const kvm = Kvm.open(); // or Kvm.open('/dev/kvm')
   * ```
   */
  static open(path?: string): Kvm {
    return new Kvm(call('Kvm.open', () => native.NativeKvm.open(path)));
  }

  /**
   * Closes `/dev/kvm`. VMs already created keep working (they hold their own file
   * descriptors); later calls on this object throw `ECLOSED`. Idempotent; `using` works.
   *
   * @example
   * ```ts
   * using kvm = Kvm.open();
   * const vm = kvm.createVm();
   * ```
   */
  close(): void {
    this.#native.close();
  }

  /** `using kvm = Kvm.open()` closes it at the end of the scope. */
  [dispose](): void {
    this.close();
  }

  /**
   * `KVM_GET_API_VERSION`: 12.
   *
   * @example
   * ```ts
   * Kvm.open().apiVersion; // 12
   * ```
   */
  get apiVersion(): number {
    return call('apiVersion', () => this.#native.apiVersion);
  }

  /**
   * `KVM_CHECK_EXTENSION`: 0 if absent, else positive (1, a count or a bitmask).
   *
   * @example
   * ```ts
   * const slots = kvm.checkExtension(10); // KVM_CAP_NR_MEMSLOTS
   * ```
   */
  checkExtension(cap: number): number {
    return call('checkExtension', () => this.#native.checkExtension(cap));
  }

  /**
   * `KVM_GET_SUPPORTED_CPUID`.
   *
   * @example
   * ```ts
   * const leaf1 = kvm.supportedCpuid().find((e) => e.function === 1);
   * ```
   */
  supportedCpuid(): CpuidEntry[] {
    return call('supportedCpuid', () => this.#native.supportedCpuid());
  }

  /**
   * Creates a VM (x86: TSS and identity map set up; irqchip only if asked).
   *
   * @example
   * ```ts
   * const vm = kvm.createVm({ irqchip: true });
   * ```
   */
  createVm(options: VmOptions = {}): Vm {
    const o = checkOptions<VmOptions>('createVm', options, ['irqchip', 'hypercallPort', 'userspaceMsr']);
    const { irqchip = false, hypercallPort = DEFAULT_HYPERCALL_PORT, userspaceMsr = false } = o;
    const port = hypercallPort === null ? -1 : hypercallPort;
    return new Vm(call('createVm', () => this.#native.createVm(!!irqchip, port, !!userspaceMsr)));
  }

  /**
   * A VM restored from the snapshot at `path` ({@link Vm.snapshot}), in this or another
   * process: memory, irqchip, PIT and clock as saved. Memory comes from the file lazily
   * and copy-on-write (the file is never changed; many VMs can be restored from one
   * file), shared by every thread as usual. Bring the vcpus back with
   * {@link Vm.createVcpu} (ids in {@link Vm.snapshotVcpuIds}). A file that is not a
   * snapshot, is truncated or corrupt, was made by another version, or whose base is
   * missing throws `EINVAL` saying which, and nothing of it is mapped. With `key`, the
   * file (and each base of a diff) must be signed with it ({@link SnapshotOptions.key}):
   * one that is not, or was changed since, throws `EINVAL` before its state is read.
   * Without a key a file is trusted input (see SECURITY.md).
   *
   * @example
   * ```ts
   * const vm = kvm.restoreVm('/tmp/booted.snap');
   * const vcpu = vm.createVcpu(0);
   * vcpu.run(); // continues where the guest was
   * kvm.restoreVm('/tmp/signed.snap', { key: process.env.SNAPSHOT_KEY });
   * ```
   */
  restoreVm(path: string, options: RestoreOptions = {}): Vm {
    const { key } = checkOptions<RestoreOptions>('restoreVm', options, ['key']);
    checkPath('restoreVm', path);
    const bytes = keyBytes('restoreVm', key);
    return new Vm(call('restoreVm', () => this.#native.restoreVm(path, bytes)));
  }
}
