/**
 * Strict inputs: option objects and partial state, checked before anything reaches
 * native code, so a typo is an error that names it and changes nothing.
 * @internal
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';

import { VcpuError } from './errors';

/** `value` as an object, or a VcpuError naming `name`. `undefined` is `{}` when allowed. */
export function objectArg(op: string, name: string, value: unknown, optional = false): Record<string, unknown> {
  if (value === undefined && optional) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new VcpuError('EINVAL', op, `${op}: ${name} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** `options` checked: an object (or undefined) whose keys are all in `known`. */
export function checkOptions<T extends object>(op: string, options: unknown, known: readonly (keyof T & string)[]): T {
  const o = objectArg(op, 'options', options, true);
  for (const key of Object.keys(o)) {
    if (!(known as readonly string[]).includes(key)) {
      throw new VcpuError('EINVAL', op, `${op}: unknown option '${key}' (known: ${known.join(', ')})`);
    }
  }
  return o as T;
}

/**
 * `current` with the fields `patch` gives replaced, recursively for nested objects
 * (a segment inside sregs, the exception inside vcpu events). A key `current` does not
 * have is an error naming its path; nothing is changed then.
 */
export function mergePartial<T>(op: string, current: T, patch: unknown, path = ''): T {
  const p = objectArg(op, path || 'the argument', patch);
  const result = { ...current } as Record<string, unknown>;
  for (const [key, value] of Object.entries(p)) {
    const at = path ? `${path}.${key}` : key;
    if (!Object.prototype.hasOwnProperty.call(current, key)) {
      const known = Object.keys(current as object).join(', ');
      throw new VcpuError('EINVAL', op, `${op}: unknown field '${at}' (known: ${known})`);
    }
    if (value === undefined) continue;
    const was = result[key];
    result[key] = isPlainObject(was) ? mergePartial(op, was, value, at) : value;
  }
  return result as T;
}

/** A handler: a function, or a VcpuError naming it. */
export function checkFunction<F>(op: string, name: string, fn: F): F {
  return typeof fn === 'function' ? fn : notAFunction(op, name, fn);
}

function notAFunction(op: string, name: string, v: unknown): never {
  throw new VcpuError('EINVAL', op, `${op}: ${name} must be a function, got ${describe(v)}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'bigint') return `${v}n`;
  return typeof v === 'string' ? JSON.stringify(v) : typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

/**
 * Parses `'512M'`, `'1G'`, `'65536K'` or a byte count; `op` names the caller in the
 * error.
 *
 * @example
 * ```ts
 * parseSize('512M'); // 536870912
 * ```
 */
export function parseSize(size: number | string, op = 'parseSize'): number {
  if (typeof size === 'number') return size;
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(String(size).trim());
  if (!m) throw new VcpuError('EINVAL', op, `${op}: not a size: ${size} (use e.g. 512M or 1G)`);
  const unit = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * unit;
}

/** `source` itself, or the bytes of the file it names (a VcpuError with fs's code if unreadable). */
export function bytesOf(op: string, what: string, source: Uint8Array | string): Uint8Array {
  if (typeof source !== 'string') return source;
  try {
    return readFileSync(source);
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'EIO';
    throw new VcpuError(code, op, `${op}: cannot read the ${what} ${source}: ${(e as Error).message}`);
  }
}
