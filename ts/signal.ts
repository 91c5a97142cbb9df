/**
 * `VcpuSignalHandle`: stops a vcpu's `run()` from anywhere.
 * @packageDocumentation
 */
import native from './native';

/**
 * Makes a vcpu's `run()` return `{ kind: 'Intr' }`: sets `immediate_exit` and sends a
 * real-time signal to the thread inside the guest. Plain data (`{ id }`), so it can be
 * sent to any worker with `postMessage`; rebuild it there with
 * {@link VcpuSignalHandle.from}. After the vcpu is closed it does nothing.
 *
 * @example
 * ```ts
 * // main thread
 * worker.postMessage(vcpu.signalHandle());
 * // worker
 * parentPort.on('message', (h) => VcpuSignalHandle.from(h).signalImmediateExit());
 * ```
 */
export class VcpuSignalHandle {
  /** Process-wide number of the vcpu. */
  readonly id: number;

  /** Rebuilds a handle from its data (as received through `postMessage`). */
  constructor(data: number | { readonly id: number }) {
    this.id = typeof data === 'number' ? data : Number(data?.id);
  }

  /**
   * Same as the constructor, reads better after `postMessage`.
   *
   * @example
   * ```ts
   * parentPort.on('message', (m) => VcpuSignalHandle.from(m).signalImmediateExit());
   * ```
   */
  static from(data: number | { readonly id: number }): VcpuSignalHandle {
    return new VcpuSignalHandle(data);
  }

  /**
   * Interrupts the vcpu: the `run()` in progress (or the next one) returns `Intr`.
   * Returns false if the vcpu no longer exists.
   *
   * @example
   * ```ts
   * vcpu.signalHandle().signalImmediateExit(); // run() returns { kind: 'Intr' }
   * ```
   */
  signalImmediateExit(): boolean {
    return native.kickVcpu(this.id);
  }
}
