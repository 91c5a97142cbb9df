/**
 * Handling an exit from JS over the vcpu's exit record: the record says what is pending
 * and where the data is; the handler reads and writes the data in place (`kvm_run`),
 * so an `Io` or `Mmio` exit needs no call into native code, and a hypercall one, which
 * writes its results into the vcpu before the handler's caller returns.
 * @internal
 * @packageDocumentation
 */
import { call, toVcpuError, VcpuError } from './errors';
import { Code, Pending } from './exit_layout';
import { ExitRecord, Field } from './exit_record';
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
  /** True while a handler of this channel's runs in place (re-entry is refused). */
  #handling = false;
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
  // Kept small: V8 inlines it, and what it calls, into the caller's loop only while the
  // whole stays under its inlining budget (each exit pays dozens of instructions more
  // otherwise).
  handleAccess(op: string, kind: AccessKind, fn: IoHandler): void {
    if (this.scratch !== undefined) return this.#handleCopied(op, kind, fn);
    const words = this.record.words;
    const seq = words[Field.seq];
    if (
      this.#handling ||
      words[Field.pending] !== (kind === 'Io' ? Pending.Io : Pending.Mmio) ||
      words[Field.answered] === seq
    ) {
      this.#refuse(op, kind);
    }
    this.#handling = true;
    try {
      this.#element(words, fn);
      if (words[Field.remaining] > 1) this.#nextElements(words, fn);
    } catch (error) {
      this.#answered(); // given up
      throw error;
    }
    // Answered: the exit is pending no more (the record's `pending` is the vcpu's to write).
    words[Field.answered] = seq;
    this.#handling = false;
  }

  /** The other elements of a string access: Rust moves the record on to each. */
  #nextElements(words: Uint32Array, fn: IoHandler): void {
    do {
      this.bound.nextElement();
      this.#element(words, fn);
    } while (words[Field.remaining] > 1);
  }

  /** True while one of this channel's handlers runs in place. */
  get handling(): boolean {
    return this.#handling;
  }

  /** `handleAccess` where JS cannot view `kvm_run`: native code copies each element. */
  #handleCopied(op: string, kind: AccessKind, fn: IoHandler): void {
    this.#copyHandler = fn;
    this.guard(op, () =>
      kind === 'Io' ? this.#native.handleIo(this.#onCopied) : this.#native.handleMmio(this.#onCopied),
    );
  }

  /** After a `Hypercall` exit: `fn` sets the results, which go into the vcpu at once. */
  handleHypercall(op: string, fn: (abi: HypercallAbi) => void): void {
    this.#take(op, Pending.Hypercall, 'Hypercall');
    try {
      fn(this.abi);
    } catch (error) {
      this.#answered(); // given up: the guest sees no results
      throw error;
    }
    this.#handling = false;
    this.guard(op, () => this.bound.completeHypercall());
  }

  /** After an `MsrAccess` exit: `fn` answers; the answer reaches the guest at once. */
  handleMsr(op: string, fn: MsrHandler): void {
    const big = this.record.big;
    this.#take(op, Pending.Msr, 'Msr');
    const m = {
      index: Number(big[Field.msrIndex]),
      write: big[Field.msrWrite] === 1n,
      data: big[Field.msrData],
      fault: false,
    };
    try {
      fn(m);
      // Checked before anything is written, so a bad answer changes nothing.
      big[Field.msrData] = toU64(m.data, 'data', undefined, op);
    } catch (error) {
      this.#answered();
      throw error;
    }
    big[Field.msrFault] = m.fault ? 1n : 0n;
    this.#handling = false;
    this.guard(op, () => this.bound.completeMsr());
  }

  /** Handles the exit `code` with its handler in `handlers`; false if it has none. */
  dispatch(code: number, handlers: ExitHandlers): boolean {
    if (code === Code.Io && handlers.io) this.handleAccess('handleIo', 'Io', handlers.io);
    else if (code === Code.Mmio && handlers.mmio) this.handleAccess('handleMmio', 'Mmio', handlers.mmio);
    else if (code === Code.Hypercall && handlers.hypercall) this.handleHypercall('handleHypercall', handlers.hypercall);
    else if (code === Code.MsrAccess && handlers.msr) this.handleMsr('handleMsr', handlers.msr);
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

  /**
   * The pending exit must be `pending` (exit `kind`), not answered yet: a handler now runs
   * for it. The record's `pending` is the vcpu's to write; this side writes answers only.
   */
  #take(op: string, pending: Pending, kind: string): void {
    const words = this.record.words;
    if (this.#handling || words[Field.pending] !== pending || words[Field.answered] === words[Field.seq]) {
      this.#refuse(op, kind);
    }
    this.#handling = true;
  }

  /** The exit is answered (or given up): it is pending no more. */
  #answered(): void {
    const words = this.record.words;
    words[Field.answered] = words[Field.seq];
    this.#handling = false;
  }

  /** Why `op` cannot handle the pending exit (it is not a `kind`). */
  #refuse(op: string, kind: string): never {
    if (this.#native.closed) throw new VcpuError('ECLOSED', op, `${op}: the vcpu is closed`);
    const why = this.#handling
      ? `${op} cannot run inside a handler`
      : `${op} must follow a run() that returned ${kind}`;
    throw new VcpuError('EINVAL', op, why);
  }

  /** Calls `fn` with the record's current element in place (`words`: the record's). */
  #element(words: Uint32Array, fn: IoHandler): void {
    this.#call(words, fn, this.#view(words[Field.dataOffset], words[Field.size]));
  }

  /** Calls `fn` with the record's current element, its data in `data`. */
  #call(words: Uint32Array, fn: IoHandler, data: Uint8Array): void {
    const p = this.#params;
    // The record's `address` getter, spelled out: one call fewer per exit.
    const high = words[Field.address + 1];
    p.address = high === 0 ? words[Field.address] : words[Field.address] + high * 0x1_0000_0000;
    p.size = words[Field.size] as IoParams['size'];
    p.operation = words[Field.isWrite] === 1 ? 'write' : 'read';
    p.data = data;
    fn(p);
  }

  /** A view of `size` bytes at `offset` in `kvm_run`: most devices see the same one each time. */
  #view(offset: number, size: number): Uint8Array {
    return ((offset << 4) | size) === this.#lastKey ? this.#lastView : this.#newView(offset, size);
  }

  /** The view for an element not like the last one, made once per place and kept. */
  #newView(offset: number, size: number): Uint8Array {
    const key = (offset << 4) | size; // offsets are within kvm_run's mapping, sizes below 16
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
      const words = this.record.words;
      this.#call(words, this.#copyHandler, this.scratch!.subarray(0, words[Field.size]));
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
  if (handlers.io) mask |= 1 << Code.Io;
  if (handlers.mmio) mask |= 1 << Code.Mmio;
  if (handlers.hypercall) mask |= 1 << Code.Hypercall;
  if (handlers.msr) mask |= 1 << Code.MsrAccess;
  return mask;
}
