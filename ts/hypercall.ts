/**
 * `HypercallAbi`: a guest's call to the host.
 * @packageDocumentation
 */
import { VcpuError } from './errors';
import type { RegValue } from './types';

import { Field, Limit, type ExitRecord } from './exit_record';

/** What the helpers need of a VM: bounds-checked copies of guest memory. */
export interface GuestMemoryAccess {
  /** A copy of `length` bytes at guest physical address `gpa`. */
  read(gpa: number, length: number): Uint8Array;
  /** Copies `bytes` to guest physical address `gpa`. */
  write(gpa: number, bytes: Uint8Array): void;
}

/**
 * A hypercall, as crosvm's `HypercallAbi`: the id, up to six arguments, and up to four
 * results the handler sets with {@link HypercallAbi.setResults}. Valid inside the
 * handler only (the object is reused).
 *
 * On x86 the guest makes the call through the port-I/O ABI (`guests/hypercall.inc`):
 * id written with `out dx, eax` to the hypercall port (default 0x500), arguments in
 * rbx, rcx, rsi, rdi, r8, r9; results go to rax, rbx, rcx, rdx. Result 0 defaults to
 * `-1` (all ones, "not supported"); results 1–3 default to the registers' values.
 *
 * @example
 * ```ts
 * vcpu.handleHypercall((abi) => {
 *   if (abi.hypercallId === 1n) {
 *     const text = abi.readString(0, 1); // pointer in argument 0, length in argument 1
 *     console.log(text);
 *     abi.setResults([BigInt(text.length)]);
 *   }
 * });
 * ```
 */
export class HypercallAbi {
  readonly #record: BigUint64Array;
  /** The same record as 32-bit words: the counts' low halves, read without bigints. */
  readonly #words: Uint32Array;
  readonly #memory: GuestMemoryAccess;

  /** @internal */
  constructor(record: ExitRecord, memory: GuestMemoryAccess) {
    this.#record = record.big;
    this.#words = record.words;
    this.#memory = memory;
  }

  get #argCount(): number {
    return this.#words[Field.argCountLow];
  }

  /**
   * The call's id.
   *
   * @example
   * ```ts
   * if (abi.hypercallId === 1n) abi.setResults([0n]);
   * ```
   */
  get hypercallId(): bigint {
    return this.#record[Field.hypercallId];
  }

  /**
   * All arguments (a fresh array).
   *
   * @example
   * ```ts
   * const [a, b] = abi.args;
   * ```
   */
  get args(): bigint[] {
    return Array.from(this.#record.subarray(Field.args, Field.args + this.#argCount));
  }

  /**
   * Argument `n`, or `undefined` past the last.
   *
   * @example
   * ```ts
   * const length = abi.getArgument(1) ?? 0n;
   * ```
   */
  getArgument(n: number): bigint | undefined {
    return Number.isInteger(n) && n >= 0 && n < this.#argCount ? this.#record[Field.args + n] : undefined;
  }

  /**
   * The results the guest will see (defaults until set).
   *
   * @example
   * ```ts
   * abi.getResults()[0]; // -1 (all ones) until set
   * ```
   */
  getResults(): bigint[] {
    return Array.from(this.#record.subarray(Field.results, Field.results + this.#words[Field.resultCountLow]));
  }

  /**
   * Sets the first `results.length` results (at most 4); the others keep their
   * defaults. Negative values are stored as two's complement (`-1n` is all ones).
   *
   * @example
   * ```ts
   * abi.setResults([42n]); // rax = 42
   * abi.setResults([-1n, 7n]); // rax = all ones, rbx = 7
   * ```
   */
  setResults(results: readonly RegValue[]): void {
    if (!Array.isArray(results) || results.length > Limit.results) {
      throw new VcpuError('EINVAL', 'setResults', `setResults takes an array of at most ${Limit.results} values`);
    }
    // Checked before anything is written, so a bad value changes nothing.
    for (let i = 0; i < results.length; i++) toU64(results[i], 'results', i);
    for (let i = 0; i < results.length; i++) this.#record[Field.results + i] = toU64(results[i], 'results', i);
    if (results.length > this.#words[Field.resultCountLow]) this.#record[Field.resultCount] = BigInt(results.length);
  }

  /**
   * A copy of the guest buffer whose address is argument `ptrArg` and length argument `lenArg`.
   *
   * @example
   * ```ts
   * const bytes = abi.readBuffer(0, 1); // pointer in argument 0 (rbx), length in 1 (rcx)
   * ```
   */
  readBuffer(ptrArg: number, lenArg: number): Uint8Array {
    return this.#memory.read(this.#argNumber(ptrArg), this.#argNumber(lenArg));
  }

  /**
   * The guest buffer at argument `ptrArg`, `lenArg` bytes long, decoded as UTF-8.
   *
   * @example
   * ```ts
   * console.log(abi.readString(0, 1));
   * ```
   */
  readString(ptrArg: number, lenArg: number): string {
    return Buffer.from(this.readBuffer(ptrArg, lenArg)).toString('utf8');
  }

  /**
   * Writes `data` into the guest buffer whose address is argument `ptrArg`.
   *
   * @example
   * ```ts
   * abi.writeBuffer(0, new TextEncoder().encode('pong'));
   * ```
   */
  writeBuffer(ptrArg: number, data: Uint8Array): void {
    this.#memory.write(this.#argNumber(ptrArg), data);
  }

  #argNumber(n: number): number {
    const v = this.getArgument(n);
    if (v === undefined || v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VcpuError('EINVAL', 'hypercall', `argument ${n} is not a usable address or length`);
    }
    return Number(v);
  }
}

const MIN_I64 = -(1n << 63n);
const LIMIT_U64 = 1n << 64n;

/**
 * A register value as an unsigned 64-bit bigint, or a VcpuError naming `name` (and
 * `index`). Allocation-free on the good path: it runs once per hypercall result.
 * @internal
 */
export function toU64(v: unknown, name: string, index?: number, op = 'setResults'): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v)) v = BigInt(v);
  if (typeof v !== 'bigint' || v < MIN_I64 || v >= LIMIT_U64) {
    const what = index === undefined ? name : `${name}[${index}]`;
    throw new VcpuError('EINVAL', op, `${what} must be a bigint (or safe integer) in [-2^63, 2^64), got ${String(v)}`);
  }
  return v < 0n ? BigInt.asUintN(64, v) : v;
}
