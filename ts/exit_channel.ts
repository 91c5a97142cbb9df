/**
 * Handling an exit from JS over the vcpu's exit record: the record says what is pending
 * and where the data is; the handler reads and writes the data in place (`kvm_run`),
 * so an `Io` or `Mmio` exit needs no call into native code, and a hypercall one, which
 * writes its results into the vcpu before the handler's caller returns.
 * @internal
 * @packageDocumentation
 */
import { call, toVcpuError, VcpuError } from './errors';
import { CODE } from './exit';
import { ExitRecord, FIELD, PENDING } from './exit_record';
import { HypercallAbi, toU64 } from './hypercall';
import type { NativeVcpu } from './native';
import { checkFunction, objectArg } from './options';
import type { IoHandler, IoParams } from './types';
import type { Vm } from './vm';

/** Handlers for the exits JS can complete; an exit whose handler is missing is returned. */
export interface ExitHandlers {
  /** Port I/O. */
  io?: IoHandler;
  /** MMIO. */
  mmio?: IoHandler;
  /** Hypercalls. */
  hypercall?: (abi: HypercallAbi) => void;
  /** MSR accesses KVM sends to userspace (`createVm({ userspaceMsr: true })`). */
  msr?: MsrHandler;
}

/** One MSR access: for a read, set `data` (it goes to the guest's EDX:EAX); `fault` gives #GP. */
export interface MsrAccess {
  /** The MSR's index (ECX). */
  readonly index: number;
  /** True for `wrmsr`. */
  readonly write: boolean;
  /** The value written; for a read, what the guest gets (0 unless set). */
  data: bigint;
  /** Set to `true` to give the guest a #GP instead. */
  fault: boolean;
}

/** Answers an `MsrAccess` exit. */
export type MsrHandler = (m: MsrAccess) => void;

/** The keys an `ExitHandlers` object may have. */
export const HANDLER_KEYS: readonly (keyof ExitHandlers)[] = ['io', 'mmio', 'hypercall', 'msr'];

/** Size of the copy buffer used where external buffers are forbidden (one PIO page). */
const SCRATCH_SIZE = 4096;

type AccessKind = 'Io' | 'Mmio';

/** What `NativeVcpu.bind` returns. */
type BoundFunctions = ReturnType<NativeVcpu['bind']>;

export class ExitChannel {
  readonly record = new ExitRecord();
  readonly abi: HypercallAbi;
  /** Where JS cannot view `kvm_run` (Electron), each element's data is copied through this. */
  readonly scratch: Uint8Array | undefined;
  /** The native calls bound to this vcpu that run it and complete its exits. */
  readonly bound: BoundFunctions;
  readonly #native: NativeVcpu;
  readonly #kvmRun: ArrayBuffer | null;
  readonly #params: IoParams = { address: 0, size: 1, operation: 'read', data: new Uint8Array(1) };
  readonly #views = new Map<number, Uint8Array>();
  /** The last view made, and its key: most devices see the same element over and over. */
  #lastView: Uint8Array = new Uint8Array(0);
  #lastKey = -1;
  /** The handler the copy path's trampoline calls, and the error it threw. */
  #copyHandler: IoHandler = () => {};
  #thrown: { error: unknown } | undefined;

  constructor(native: NativeVcpu, vm: Vm, kvmRun: ArrayBuffer | null) {
    this.#native = native;
    this.#kvmRun = kvmRun;
    this.scratch = kvmRun ? undefined : new Uint8Array(SCRATCH_SIZE);
    this.abi = new HypercallAbi(this.record, vm);
    this.bound = call('createVcpu', () => native.bind(this.record.big, this.scratch));
  }

  /** After an `Io`/`Mmio` exit: `fn` once per element, in order. */
  handleAccess(op: string, kind: AccessKind, fn: IoHandler): void {
    if (this.scratch) {
      this.#copyHandler = fn;
      this.guard(op, () =>
        kind === 'Io' ? this.#native.handleIo(this.#onCopied) : this.#native.handleMmio(this.#onCopied),
      );
      return;
    }
    const rec = this.record;
    this.#take(op, kind);
    try {
      for (;;) {
        this.#element(fn);
        if (rec.words[FIELD.remaining] <= 1) break;
        this.bound.nextElement(); // a string access: Rust moves the record on
      }
    } finally {
      rec.pending = PENDING.None;
    }
  }

  /** After a `Hypercall` exit: `fn` sets the results, which go into the vcpu at once. */
  handleHypercall(op: string, fn: (abi: HypercallAbi) => void): void {
    const rec = this.record;
    this.#take(op, 'Hypercall');
    try {
      fn(this.abi);
    } catch (error) {
      rec.pending = PENDING.None;
      throw error;
    }
    rec.pending = PENDING.Hypercall;
    this.guard(op, () => this.bound.completeHypercall());
  }

  /** After an `MsrAccess` exit: `fn` answers; the answer reaches the guest at once. */
  handleMsr(op: string, fn: MsrHandler): void {
    const big = this.record.big;
    this.#take(op, 'Msr');
    const m = {
      index: Number(big[FIELD.msrIndex]),
      write: big[FIELD.msrWrite] === 1n,
      data: big[FIELD.msrData],
      fault: false,
    };
    try {
      fn(m);
      // Checked before anything is written, so a bad answer changes nothing.
      big[FIELD.msrData] = toU64(m.data, 'data', undefined, op);
    } catch (error) {
      this.record.pending = PENDING.None;
      throw error;
    }
    big[FIELD.msrFault] = m.fault ? 1n : 0n;
    this.record.pending = PENDING.Msr;
    this.guard(op, () => this.bound.completeMsr());
  }

  /** Handles the exit `code` with its handler in `handlers`; false if it has none. */
  dispatch(code: number, handlers: ExitHandlers): boolean {
    if (code === CODE.Io && handlers.io) this.handleAccess('handleIo', 'Io', handlers.io);
    else if (code === CODE.Mmio && handlers.mmio) this.handleAccess('handleMmio', 'Mmio', handlers.mmio);
    else if (code === CODE.Hypercall && handlers.hypercall) this.handleHypercall('handleHypercall', handlers.hypercall);
    else if (code === CODE.MsrAccess && handlers.msr) this.handleMsr('handleMsr', handlers.msr);
    else return false;
    return true;
  }

  /** Forgets the views of `kvm_run` (the buffer is being detached). */
  clear(): void {
    this.#views.clear();
    this.#lastKey = -1;
  }

  /**
   * Runs a native call that may call a handler: the handler's own error propagates as is;
   * any other becomes a VcpuError for `op`.
   */
  guard<T>(op: string, f: () => T): T {
    this.#thrown = undefined;
    try {
      return f();
    } catch (e) {
      const thrown = this.#thrown as { error: unknown } | undefined;
      this.#thrown = undefined;
      if (thrown) throw thrown.error;
      throw toVcpuError(e, op);
    }
  }

  /** The pending exit must be `kind`: a handler now runs for it. */
  #take(op: string, kind: keyof typeof PENDING): void {
    const rec = this.record;
    if (rec.pending !== PENDING[kind]) this.#refuse(op, kind);
    rec.pending = PENDING.Handling;
  }

  /** Why `op` cannot handle the pending exit (it is not a `kind`). */
  #refuse(op: string, kind: keyof typeof PENDING): never {
    if (this.#native.closed) throw new VcpuError('ECLOSED', op, `${op}: the vcpu is closed`);
    const why =
      this.record.pending === PENDING.Handling
        ? `${op} cannot run inside a handler`
        : `${op} must follow a run() that returned ${kind}`;
    throw new VcpuError('EINVAL', op, why);
  }

  /** Calls `fn` with the record's current element. */
  #element(fn: IoHandler): void {
    const w = this.record.words;
    const p = this.#params;
    const size = w[FIELD.size];
    p.address = this.record.address;
    p.size = size as IoParams['size'];
    p.operation = w[FIELD.isWrite] === 1 ? 'write' : 'read';
    p.data = this.scratch ? this.scratch.subarray(0, size) : this.#view(w[FIELD.dataOffset], size);
    fn(p);
  }

  #view(offset: number, size: number): Uint8Array {
    const key = offset * 16 + size;
    if (key === this.#lastKey) return this.#lastView;
    let view = this.#views.get(key);
    if (!view) {
      view = new Uint8Array(this.#kvmRun!, offset, size);
      this.#views.set(key, view);
    }
    this.#lastKey = key;
    this.#lastView = view;
    return view;
  }

  /** The copy path's per-element callback from native code; keeps its error to rethrow as is. */
  readonly #onCopied = (): void => {
    try {
      this.#element(this.#copyHandler);
    } catch (error) {
      this.#thrown = { error };
      throw error;
    }
  };
}

/**
 * `handlers` checked: an object whose keys are handler names and whose values are
 * functions (or undefined), else a VcpuError naming what is wrong.
 */
export function checkHandlers(op: string, handlers: unknown): ExitHandlers {
  if (handlers === undefined) return {};
  for (const [key, value] of Object.entries(objectArg(op, 'handlers', handlers))) {
    if (!(HANDLER_KEYS as readonly string[]).includes(key)) {
      throw new VcpuError('EINVAL', op, `${op}: unknown handler '${key}' (known: ${HANDLER_KEYS.join(', ')})`);
    }
    if (value !== undefined) checkFunction(op, `handler '${key}'`, value);
  }
  return handlers as ExitHandlers;
}

/** The exit codes `handlers` has handlers for, as a bit mask for the native thread. */
export function handledMask(handlers: ExitHandlers): number {
  let mask = 0;
  if (handlers.io) mask |= 1 << CODE.Io;
  if (handlers.mmio) mask |= 1 << CODE.Mmio;
  if (handlers.hypercall) mask |= 1 << CODE.Hypercall;
  if (handlers.msr) mask |= 1 << CODE.MsrAccess;
  return mask;
}
