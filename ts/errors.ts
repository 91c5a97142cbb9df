/**
 * The package's one error type.
 * @packageDocumentation
 */

/**
 * Every error the package throws. `code` is an errno name (`'ENOENT'`, `'EACCES'`,
 * `'EINVAL'`, `'EEXIST'`, `'EFAULT'`, `'ENOSPC'`, `'EBUSY'`, …) or `'ECLOSED'` for use
 * after close; `op` names the failing operation (`'createVm'`, `'run'`, …).
 *
 * @example
 * ```ts
 * try {
 *   vm.addMemory({ guestAddress: 0x123, size: 4096 });
 * } catch (e) {
 *   if (e instanceof VcpuError && e.code === 'EINVAL') console.error(e.message);
 * }
 * ```
 */
export class VcpuError extends Error {
  /** Errno name or `'ECLOSED'`. */
  readonly code: string;
  /** The operation that failed. */
  readonly op: string;

  constructor(code: string, op: string, message: string) {
    super(message);
    this.name = 'VcpuError';
    this.code = code;
    this.op = op;
  }
}

/**
 * Turns whatever the native layer threw into a `VcpuError` for `op`. Native errors carry
 * the errno name as `code` (data, nothing to parse); argument conversion errors raised by
 * napi itself (a string where a number belongs, …) become `EINVAL`.
 * @internal
 */
export function toVcpuError(e: unknown, op: string): VcpuError {
  if (e instanceof VcpuError) return e;
  const err = e as { code?: unknown; message?: unknown };
  const message = typeof err?.message === 'string' ? err.message : String(e);
  if (typeof err?.code === 'string' && ERRNO_NAME.test(err.code)) return new VcpuError(err.code, op, message);
  return new VcpuError('EINVAL', op, `${op}: ${message}`);
}

/** What a native error's `code` looks like: an errno name or `ECLOSED`. */
const ERRNO_NAME = /^E[A-Z0-9]+$/;

/**
 * Runs `f`, turning a native error into a `VcpuError` for `op`.
 * @internal
 */
export function call<T>(op: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw toVcpuError(e, op);
  }
}
