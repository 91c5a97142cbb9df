/**
 * A vcpu run by a native thread (runAsync, the Linux device loop): the promise of its
 * final exit, and who may use the vcpu meanwhile — only the thread's handlers, on this
 * thread, while the thread waits for them.
 * @internal
 * @packageDocumentation
 */
import { call, toVcpuError, VcpuError } from './errors';
import native from './native';

/** The thread's events at or above this are its final exit (see vcpu-napi). */
const FINAL = native.asyncFinalPhase();

/** What a native thread calls back with: `(error, event)`; true goes on. */
export type ThreadCallback = (err: Error | null, event: number) => boolean;

export class NativeThread {
  /** True while a native thread runs the vcpu. */
  running = false;
  /** True while that thread's handler runs here. */
  #inHandler = false;

  /**
   * Starts the thread (`start` gives it the callback) and resolves to its final exit
   * (`exitFor(code)`). Exits it hands over go to `handle`.
   */
  start<T>(
    op: string,
    start: (callback: ThreadCallback) => void,
    exitFor: (code: number) => T,
    handle?: (code: number) => void,
  ): Promise<T> {
    this.refuse(op);
    return new Promise<T>((resolve, reject) => {
      const finish = () => {
        this.running = false;
        this.#inHandler = false;
      };
      // Whatever happens in here, the promise settles and nothing is thrown back into
      // native code: an answer of false stops the thread.
      const callback: ThreadCallback = (err, event) => {
        if (err) {
          finish();
          reject(toVcpuError(err, op));
          return false;
        }
        if (event >= FINAL || !handle) {
          finish();
          try {
            resolve(exitFor(event & 0xff));
          } catch (error) {
            reject(toVcpuError(error, op));
          }
          return false;
        }
        this.#inHandler = true;
        try {
          handle(event);
          return true;
        } catch (error) {
          finish();
          reject(error);
          return false;
        } finally {
          this.#inHandler = false;
        }
      };
      call(op, () => start(callback));
      this.running = true;
    });
  }

  /** Running or completing exits belongs to the thread while it runs, even inside its handlers. */
  refuse(op: string): void {
    // `=== true`: one compare on every run, where a truth test checks each falsy kind.
    if (this.running === true) throw busy(op);
  }

  /** Other uses of the vcpu are its handlers' only. */
  refuseOutsideHandlers(op: string): void {
    if (this.running && !this.#inHandler) throw busy(op);
  }
}

function busy(op: string): VcpuError {
  return new VcpuError('EBUSY', op, `${op}: the vcpu is running on its thread (runAsync); stop it first`);
}
