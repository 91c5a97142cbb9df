/**
 * `Vcpu`: crosvm's `Vcpu` trait in TypeScript, what every architecture's vcpu has. A vcpu
 * object is a {@link VcpuX86_64} or a {@link VcpuAArch64}, with exactly its
 * architecture's methods, as crosvm splits `Vcpu` from `VcpuX86_64` and `VcpuAArch64`.
 * @packageDocumentation
 */
import { dispose } from './dispose';
import { call, toVcpuError, VcpuError } from './errors';
import { exitFor } from './exit';
import { checkHandlers, ExitChannel, handledMask, type ExitHandlers, type MsrHandler } from './exit_channel';
import { Field } from './exit_record';
import { NativeThread } from './native_thread';
import { checkFunction } from './options';
import type { HypercallAbi } from './hypercall';
import type { NativeVcpu } from './native';
import { VcpuSignalHandle } from './signal';
import type { IoHandler, RegValue, VcpuExit } from './types';
import type { HostRegs } from './host_arch';
import type { Vm } from './vm';

export type { ExitHandlers, MsrAccess, MsrHandler } from './exit_channel';

/**
 * A virtual CPU: what every architecture's has (crosvm's `Vcpu` trait). Made by
 * {@link Vm.createVcpu} as this host's {@link VcpuX86_64} or {@link VcpuAArch64}; runs on
 * the thread that created it. `R`: the architecture's general registers.
 *
 * @example
 * ```ts
 * vcpu.setupLongMode({ rip: 0x1000 });
 * for (;;) {
 *   const exit = vcpu.run();
 *   if (exit.kind === 'Io') vcpu.handleIo((p) => console.log(p.address, p.data));
 *   else break;
 * }
 * ```
 */
export abstract class Vcpu<R extends object = HostRegs> {
  /** @internal */
  protected readonly native: NativeVcpu;
  readonly #vm: Vm;
  readonly #id: number;
  readonly #kvmRun: ArrayBuffer | null;
  readonly #channel: ExitChannel;
  readonly #runFn: () => void;
  readonly #words: Uint32Array;
  /** The native thread that runs this vcpu, if one does (runAsync, the Linux device loop). */
  readonly #thread = new NativeThread();
  #closed = false;

  /** @internal */
  constructor(native: NativeVcpu, vm: Vm) {
    this.native = native;
    this.#vm = vm;
    this.#id = native.id;
    this.#kvmRun = call('createVcpu', () => native.runBuffer());
    this.#channel = new ExitChannel(native, vm, this.#kvmRun);
    this.#runFn = this.#channel.bound.run;
    this.#words = this.#channel.record.words;
    internals.set(this, { native, thread: this.#thread });
  }

  /**
   * The vcpu id.
   *
   * @example
   * ```ts
   * vm.createVcpu(1).id; // 1
   * ```
   */
  get id(): number {
    return this.#id;
  }

  /**
   * The VM this vcpu belongs to.
   *
   * @example
   * ```ts
   * vcpu.vm.read(0x1000, 16);
   * ```
   */
  get vm(): Vm {
    return this.#vm;
  }

  /**
   * Runs the guest until it exits. Throws only if the host call itself fails (or the
   * vcpu is closed), never for what the guest did.
   *
   * @example
   * ```ts
   * const exit = vcpu.run();
   * if (exit.kind === 'Hlt') console.log('halted');
   * ```
   */
  run(): VcpuExit {
    this.#thread.refuse('run');
    if (this.#channel.handling === true) throw inHandler('run');
    return exitFor(this.#run(), this.native);
  }

  /**
   * After an `Io` exit: calls `fn` once per element (string I/O repeats it, in order)
   * with the access. For a read, what `fn` puts in `data` goes to the guest. If `fn`
   * throws, the error propagates and the vcpu stays usable.
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'Io') {
   *   vcpu.handleIo((p) => {
   *     if (p.operation === 'write') console.log(`port ${p.address}:`, p.data);
   *     else p.data.fill(0xff);
   *   });
   * }
   * ```
   */
  handleIo(fn: IoHandler): void {
    this.#thread.refuse('handleIo');
    this.#channel.handleAccess('handleIo', 'Io', checkFunction('handleIo', 'the handler', fn));
  }

  /**
   * After an `Mmio` exit: as {@link VcpuTrait.handleIo}, for the memory access.
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'Mmio') vcpu.handleMmio((p) => p.operation === 'read' && p.data.fill(0));
   * ```
   */
  handleMmio(fn: IoHandler): void {
    this.#thread.refuse('handleMmio');
    this.#channel.handleAccess('handleMmio', 'Mmio', checkFunction('handleMmio', 'the handler', fn));
  }

  /**
   * After a `Hypercall` exit: gives `fn` the call; its results are in the guest's
   * registers when this returns.
   * If `fn` throws, the error propagates and the guest sees no results.
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'Hypercall') vcpu.handleHypercall((abi) => abi.setResults([abi.getArgument(0)! + 1n]));
   * ```
   */
  handleHypercall(fn: (abi: HypercallAbi) => void): void {
    this.#thread.refuse('handleHypercall');
    this.#channel.handleHypercall('handleHypercall', checkFunction('handleHypercall', 'the handler', fn));
  }

  /**
   * The general registers, by the architecture's names.
   *
   * @example
   * ```ts
   * const regs = vcpu.getRegs(); // x86: { rax, …, rip, rflags }; arm64: { x0, …, pc, pstate }
   * ```
   */
  abstract getRegs(): R;

  /**
   * Sets general registers; missing fields keep their values, and numbers are accepted
   * as well as bigints.
   *
   * @example
   * ```ts
   * vcpu.setRegs({ rip: 0x1000n }); // arm64: vcpu.setRegs({ pc: 0x1000n })
   * ```
   */
  abstract setRegs(regs: Partial<Record<keyof R, RegValue>>): void;

  /** After an `MsrAccess` exit: see {@link VcpuX86_64.handleMsr}. @internal */
  protected answerMsr(fn: MsrHandler): void {
    this.#thread.refuse('handleMsr');
    this.#channel.handleMsr('handleMsr', checkFunction('handleMsr', 'the handler', fn));
  }

  /**
   * Runs, handling `Io`, `Mmio`, `Hypercall` and `MsrAccess` exits with the given
   * handlers (one boundary crossing per exit: the run; the handler works on the exit in
   * place), and returns the first exit it does not handle. A handler that throws ends
   * the loop with its error.
   *
   * @example
   * ```ts
   * const exit = vcpu.runUntil({ io: (p) => out.push(p.data[0]) });
   * // exit.kind === 'Hlt'
   * ```
   */
  runUntil(handlers: ExitHandlers): VcpuExit {
    this.#thread.refuse('runUntil');
    if (this.#channel.handling === true) throw inHandler('runUntil');
    const h = checkHandlers('runUntil', handlers);
    const channel = this.#channel;
    const run = this.#runFn;
    const words = this.#words;
    for (;;) {
      try {
        run();
      } catch (e) {
        throw toVcpuError(e, 'run');
      }
      const code = words[Field.kind];
      if (!channel.dispatch(code, h)) return exitFor(code, this.native);
    }
  }

  /**
   * Runs on a native thread, so the event loop stays free (Electron's main process):
   * each `Io`, `Mmio` or `Hypercall` exit with a handler is handled by it on this thread
   * while the vcpu thread waits for the answer (a read gets the handler's data), and the
   * promise resolves to the first exit without a handler, or `Intr` after a kick
   * ({@link VcpuTrait.signalHandle}) or close. A handler that throws rejects the promise
   * with its error. While it runs, the vcpu's other methods throw `EBUSY`, except inside
   * its handlers.
   *
   * @example
   * ```ts
   * const done = vcpu.runAsync({ io: (p) => console.log(p.data[0]) });
   * setTimeout(() => vcpu.signalHandle().signalImmediateExit(), 1000);
   * console.log((await done).kind); // 'Hlt', or 'Intr' after the kick
   * ```
   */
  runAsync(handlers: ExitHandlers): Promise<VcpuExit> {
    const h = checkHandlers('runAsync', handlers);
    const channel = this.#channel;
    return this.#thread.start(
      'runAsync',
      (callback) => this.native.runAsync(callback, handledMask(h)),
      (code) => exitFor(code, this.native),
      (code) => channel.dispatch(code, h),
    );
  }

  /**
   * Alias of {@link VcpuTrait.runAsync}: the async form of {@link VcpuTrait.runUntil}.
   *
   * @example
   * ```ts
   * const exit = await vcpu.runUntilAsync({ io: (p) => console.log(p.address) });
   * ```
   */
  runUntilAsync(handlers: ExitHandlers): Promise<VcpuExit> {
    return this.runAsync(handlers);
  }

  /**
   * True while {@link VcpuTrait.runAsync} runs the vcpu on its native thread.
   *
   * @example
   * ```ts
   * void vcpu.runAsync({});
   * console.log(vcpu.running); // true
   * ```
   */
  get running(): boolean {
    return this.#thread.running;
  }

  /**
   * Sets `kvm_run.immediate_exit`: while true, every `run()` returns `Intr` at once.
   *
   * @example
   * ```ts
   * vcpu.setImmediateExit(true);
   * vcpu.run(); // { kind: 'Intr' }
   * vcpu.setImmediateExit(false);
   * ```
   */
  setImmediateExit(exit: boolean): void {
    call('setImmediateExit', () => this.native.setImmediateExit(!!exit));
  }

  /**
   * A handle that stops `run()` from any thread or worker (see {@link VcpuSignalHandle}).
   *
   * @example
   * ```ts
   * const handle = vcpu.signalHandle();
   * setTimeout(() => handle.signalImmediateExit(), 100); // from a timer, a worker, ...
   * ```
   */
  signalHandle(): VcpuSignalHandle {
    return new VcpuSignalHandle(call('signalHandle', () => this.native.signalHandleId()));
  }

  /**
   * Userspace is pausing this vcpu (`KVM_KVMCLOCK_CTRL`); fails where there is no kvmclock.
   *
   * @example
   * ```ts
   * vcpu.onSuspend(); // before pausing the VM, so the guest's watchdogs stay quiet
   * ```
   */
  onSuspend(): void {
    this.call('onSuspend', () => this.native.onSuspend());
  }

  /**
   * `KVM_ENABLE_CAP` on the vcpu. Unsafe for capabilities whose arguments are host
   * pointers: the kernel dereferences them.
   *
   * @example
   * ```ts
   * vcpu.enableRawCapability(KVM_CAP_HYPERV_SYNIC, [0n, 0n, 0n, 0n]);
   * ```
   */
  enableRawCapability(cap: number, args: readonly [bigint, bigint, bigint, bigint]): void {
    this.call('enableRawCapability', () => this.native.enableRawCapability(cap, [...args]));
  }

  /**
   * True once closed (or its VM closed).
   *
   * @example
   * ```ts
   * vm.close();
   * console.log(vcpu.closed); // true
   * ```
   */
  get closed(): boolean {
    return this.native.closed;
  }

  /**
   * Closes the vcpu and releases its file descriptor. Idempotent.
   *
   * @example
   * ```ts
   * vcpu.close();
   * vcpu.run(); // throws VcpuError ECLOSED
   * ```
   */
  close(): void {
    // The kvm_run view pins the kernel's vcpu (and so its VM) until it is collected:
    // the native side detaches it, so closing releases them now. Views of it become
    // empty, never dangling. (Not while a native thread may still be using it.)
    const detach = !this.#closed && !this.#thread.running ? (this.#kvmRun ?? undefined) : undefined;
    this.#channel.clear();
    this.#closed = true;
    this.native.close(detach);
    this.vm.forgetVcpu(this);
  }

  /** `using vcpu = …` closes it at the end of the scope. */
  [dispose](): void {
    this.close();
  }

  /** @internal */
  protected call<T>(op: string, f: () => T): T {
    this.#thread.refuseOutsideHandlers(op);
    return call(op, f);
  }

  /** One run; the exit's code, from the record. */
  #run(): number {
    try {
      this.#runFn();
    } catch (e) {
      throw toVcpuError(e, 'run');
    }
    return this.#words[Field.kind];
  }
}

/** The refusal of a run from inside one of the vcpu's own handlers. */
function inHandler(op: string): VcpuError {
  return new VcpuError(
    'EBUSY',
    op,
    `${op}: called from inside one of this vcpu's own handlers; return from the handler first`,
  );
}

/** Each vcpu's native object and thread, for the package's own machines (the Linux device loop). */
const internals = new WeakMap<Vcpu<object>, { native: NativeVcpu; thread: NativeThread }>();

/** The native vcpu behind `vcpu`, and the thread that may run it. @internal */
export function internalsOf(vcpu: Vcpu<object>): { native: NativeVcpu; thread: NativeThread } {
  return internals.get(vcpu)!;
}

export { VcpuError };
