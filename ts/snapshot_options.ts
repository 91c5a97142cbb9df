/**
 * The options of a snapshot and a restore ({@link Vm.snapshot}, {@link Kvm.restoreVm}),
 * what a snapshot reports, and their checks.
 * @packageDocumentation
 */
import { VcpuError } from './errors';

/** Options of {@link Vm.snapshot}. */
export interface SnapshotOptions {
  /** Only the pages written since the VM's previous snapshot or restore. */
  diff?: boolean;
  /**
   * Sign the file with this key (HMAC-SHA-256; a string is taken as UTF-8): a restore
   * given the same key refuses a file anyone without it changed. Not empty; 32 random
   * bytes are a good key. See SECURITY.md.
   */
  key?: SnapshotKey;
}

/** How to restore a snapshot. */
export interface RestoreOptions {
  /** The file must be signed with this key ({@link SnapshotOptions.key}). */
  key?: SnapshotKey;
}

/** A snapshot signing key: bytes, or a string taken as UTF-8. */
export type SnapshotKey = Uint8Array | string;

/** `key` as bytes, or a VcpuError naming what is wrong. @internal */
export function keyBytes(op: string, key: unknown): Uint8Array | undefined {
  if (key === undefined) return undefined;
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw new VcpuError('EINVAL', op, `${op}: key must be a non-empty Uint8Array or string`);
  }
  return bytes;
}

/** What {@link Vm.snapshot} wrote. */
export interface SnapshotInfo {
  /** Bytes of data written: header, state and memory pages (zero pages take none). */
  bytes: number;
  /** Guest memory pages written. */
  pages: number;
}

/** `path` must be a non-empty string; else `EINVAL` from `op`. @internal */
export function checkPath(op: string, path: unknown): asserts path is string {
  if (typeof path !== 'string' || path === '') {
    throw new VcpuError(
      'EINVAL',
      op,
      `${op}: path must be a file name, got ${typeof path === 'string' ? "''" : typeof path}`,
    );
  }
}
