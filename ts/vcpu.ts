/**
 * `Vcpu`: crosvm's `Vcpu` trait in TypeScript, plus x86 state.
 * @packageDocumentation
 */
import { dispose } from './dispose';
import { call, threadError, toVcpuError, VcpuError } from './errors';
import { CODE, exitFor } from './exit';
import { HypercallAbi, RECORD_LENGTH, toU64 } from './hypercall';
import type { LinuxBootInfo, NativeDevices, NativeVcpu } from './native';
import { VcpuSignalHandle } from './signal';
import type {
  CpuidEntry,
  DebugRegs,
  Fpu,
  GuestDebug,
  IoHandler,
  IoParams,
  Lapic,
  Msr,
  RegValue,
  Regs,
  Sregs,
  VcpuEvents,
  VcpuExit,
  Xcr,
} from './types';
import type { Vm } from './vm';

/** Handlers for {@link Vcpu.runUntil}; an exit whose handler is missing is returned. */
export interface ExitHandlers {
  /** Port I/O. */
  io?: IoHandler;
  /** MMIO. */
  mmio?: IoHandler;
  /** Hypercalls. */
  hypercall?: (abi: HypercallAbi) => void;
}

/** Where to start after {@link Vcpu.setupLongMode}. */
export interface LongModeOptions {
  /** Instruction pointer. */
  rip?: RegValue;
  /** Stack pointer. */
  rsp?: RegValue;
}

const REG_NAMES = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
] as const;

/** Size of the copy buffer used where external buffers are forbidden (one PIO page). */
const SCRATCH_SIZE = 4096;

/** The exit record the native `run` fills for Io/Mmio: address, size, isWrite, count, dataOffset. */
const EXIT_RECORD_LENGTH = 5;

/** No exit waiting for a handler. */
const NONE = -1;

/** The async runner's events at or above this are the final exit (see vcpu-napi). */
const ASYNC_FINAL = 256;

/**
 * A virtual CPU. Made by {@link Vm.createVcpu}; runs on the thread that created it.
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
export class Vcpu {
  readonly #native: NativeVcpu;
  readonly #vm: Vm;
  readonly #id: number;
  readonly #params: IoParams = { address: 0, size: 1, operation: 'read', data: new Uint8Array(1) };
  readonly #exit = new Float64Array(EXIT_RECORD_LENGTH);
  readonly #record = new BigUint64Array(RECORD_LENGTH);
  readonly #abi: HypercallAbi;
  readonly #views = new Map<number, Uint8Array>();
  readonly #kvmRun: ArrayBuffer | null;
  readonly #scratch: Uint8Array | undefined;
  readonly #runFn: () => number;
  #last = NONE;
  #closed = false;
  #ioHandler: IoHandler = () => {};
  #mmioHandler: IoHandler = () => {};
  #hypercallHandler: (abi: HypercallAbi) => void = () => {};
  #thrown: { error: unknown } | undefined;
  #async = false;
  #inHandler = false;

  /** @internal */
  constructor(native: NativeVcpu, vm: Vm) {
    this.#native = native;
    this.#vm = vm;
    this.#id = native.id;
    this.#abi = new HypercallAbi(this.#record, vm);
    this.#kvmRun = call('createVcpu', () => native.runBuffer());
    // Where JS may not view kvm_run directly, exit data is copied through this buffer.
    this.#scratch = this.#kvmRun ? undefined : new Uint8Array(SCRATCH_SIZE);
    this.#runFn = call('createVcpu', () => native.bind(this.#exit, this.#record, this.#scratch));
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
    if (this.#async) this.#checkNotRunning('run');
    let code: number;
    try {
      code = this.#runFn();
    } catch (e) {
      this.#last = NONE;
      throw toVcpuError(e, 'run');
    }
    this.#last = code;
    return exitFor(code, this.#native);
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
    this.#handleAccess('handleIo', 'Io', fn);
  }

  /**
   * After an `Mmio` exit: as {@link Vcpu.handleIo}, for the memory access.
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'Mmio') vcpu.handleMmio((p) => p.operation === 'read' && p.data.fill(0));
   * ```
   */
  handleMmio(fn: IoHandler): void {
    this.#handleAccess('handleMmio', 'Mmio', fn);
  }

  /**
   * After a `Hypercall` exit: gives `fn` the call; its results go back to the guest
   * (written into the registers before the vcpu runs again, or before `getRegs`).
   * If `fn` throws, the error propagates and the guest sees no results.
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'Hypercall') vcpu.handleHypercall((abi) => abi.setResults([abi.getArgument(0)! + 1n]));
   * ```
   */
  handleHypercall(fn: (abi: HypercallAbi) => void): void {
    this.#checkPending('handleHypercall', 'Hypercall');
    fn(this.#abi);
    this.#abi.answered();
  }

  /**
   * Runs in a native loop, handling `Io`, `Mmio` and `Hypercall` exits with the given
   * handlers (one boundary crossing per exit), and returns the first exit it does not
   * handle. A handler that throws ends the loop with its error.
   *
   * @example
   * ```ts
   * const exit = vcpu.runUntil({ io: (p) => out.push(p.data[0]) });
   * // exit.kind === 'Hlt'
   * ```
   */
  runUntil(handlers: ExitHandlers): VcpuExit {
    this.#checkNotRunning('runUntil');
    const { io, mmio, hypercall } = handlers ?? {};
    if (io) this.#ioHandler = io;
    if (mmio) this.#mmioHandler = mmio;
    if (hypercall) this.#hypercallHandler = hypercall;
    this.#last = NONE;
    const code = this.#guard('runUntil', () =>
      this.#native.runUntil(
        io ? this.#onIo : undefined,
        mmio ? this.#onMmio : undefined,
        hypercall ? this.#onHypercall : undefined,
      ),
    );
    this.#last = code;
    return exitFor(code, this.#native);
  }

  /**
   * Runs on a native thread, so the event loop stays free (Electron's main process):
   * each `Io`, `Mmio` or `Hypercall` exit with a handler is handled by it on this thread
   * while the vcpu thread waits for the answer (a read gets the handler's data), and the
   * promise resolves to the first exit without a handler, or `Intr` after a kick
   * ({@link Vcpu.signalHandle}) or close. A handler that throws rejects the promise
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
    const { io, mmio, hypercall } = handlers ?? {};
    this.#checkNotRunning('runAsync');
    if (io) this.#ioHandler = io;
    if (mmio) this.#mmioHandler = mmio;
    if (hypercall) this.#hypercallHandler = hypercall;
    this.#last = NONE;
    return new Promise<VcpuExit>((resolve, reject) => {
      const finish = () => {
        this.#async = false;
        this.#inHandler = false;
      };
      const onEvent = (err: Error | null, event: number): boolean => {
        if (err) {
          finish();
          reject(threadError(err, 'runAsync'));
          return false;
        }
        const code = event & 0xff;
        if (event >= ASYNC_FINAL) {
          finish();
          this.#last = code;
          resolve(exitFor(code, this.#native));
          return false;
        }
        this.#inHandler = true;
        try {
          if (code === CODE.Io) this.#dispatch(this.#ioHandler);
          else if (code === CODE.Mmio) this.#dispatch(this.#mmioHandler);
          else this.#hypercallHandler(this.#abi);
          return true;
        } catch (error) {
          finish();
          reject(error);
          return false;
        } finally {
          this.#inHandler = false;
        }
      };
      this.#guard('runAsync', () => this.#native.runAsync(onEvent, !!io, !!mmio, !!hypercall));
      this.#async = true;
    });
  }

  /**
   * Runs on a native thread with the legacy devices handling port I/O in the exit path,
   * until another exit (an i8042 reset is `SystemEventReset`) or a kick (`Intr`).
   * @internal
   */
  runDevices(devices: NativeDevices): Promise<VcpuExit> {
    this.#checkNotRunning('runDevices');
    this.#last = NONE;
    return new Promise<VcpuExit>((resolve, reject) => {
      const onEvent = (err: Error | null, event: number): boolean => {
        this.#async = false;
        if (err) {
          reject(threadError(err, 'runDevices'));
        } else {
          this.#last = event & 0xff;
          resolve(exitFor(event & 0xff, this.#native));
        }
        return false;
      };
      this.#guard('runDevices', () => this.#native.runDevices(devices, onEvent));
      this.#async = true;
    });
  }

  /** @internal */
  startLinux(boot: LinuxBootInfo): void {
    this.#call('startLinux', () => this.#native.startLinux(boot));
  }

  /**
   * Alias of {@link Vcpu.runAsync}: the async form of {@link Vcpu.runUntil}.
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
   * True while {@link Vcpu.runAsync} runs the vcpu on its native thread.
   *
   * @example
   * ```ts
   * void vcpu.runAsync({});
   * console.log(vcpu.running); // true
   * ```
   */
  get running(): boolean {
    return this.#async;
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
    call('setImmediateExit', () => this.#native.setImmediateExit(!!exit));
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
    return new VcpuSignalHandle(call('signalHandle', () => this.#native.signalHandleId()));
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
    this.#call('onSuspend', () => this.#native.onSuspend());
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
    this.#call('enableRawCapability', () => this.#native.enableRawCapability(cap, [...args]));
  }

  /**
   * General-purpose registers.
   *
   * @example
   * ```ts
   * const { rip, rax } = vcpu.getRegs();
   * ```
   */
  getRegs(): Regs {
    return this.#call('getRegs', () => this.#native.getRegs());
  }

  /**
   * Sets general-purpose registers. Missing fields keep their current values, so
   * `vcpu.setRegs({ rip: 0x1000n })` works; numbers are accepted as well as bigints.
   *
   * @example
   * ```ts
   * vcpu.setRegs({ rip: 0x1000n, rsp: 0x8000n });
   * ```
   */
  setRegs(regs: Partial<Record<keyof Regs, RegValue>>): void {
    const current = REG_NAMES.every((n) => regs?.[n] !== undefined) ? undefined : this.getRegs();
    const full = {} as Regs;
    for (const n of REG_NAMES) {
      const v = regs?.[n];
      full[n] = v === undefined ? current![n] : toU64(v, n, undefined, 'setRegs');
    }
    this.#call('setRegs', () => this.#native.setRegs(full));
  }

  /**
   * Segment, descriptor-table and control registers.
   *
   * @example
   * ```ts
   * const long = (vcpu.getSregs().efer & (1n << 10n)) !== 0n; // EFER.LMA
   * ```
   */
  getSregs(): Sregs {
    return this.#call('getSregs', () => this.#native.getSregs());
  }

  /**
   * Sets special registers; missing top-level fields keep their current values.
   *
   * @example
   * ```ts
   * const { cs } = vcpu.getSregs();
   * vcpu.setSregs({ cs: { ...cs, base: 0n, selector: 0 } }); // real mode at CS = 0
   * ```
   */
  setSregs(sregs: Partial<Sregs>): void {
    const full = { ...this.getSregs(), ...sregs } as Sregs;
    this.#call('setSregs', () => this.#native.setSregs(full));
  }

  /**
   * FPU and SSE state.
   *
   * @example
   * ```ts
   * const { mxcsr } = vcpu.getFpu();
   * ```
   */
  getFpu(): Fpu {
    return this.#call('getFpu', () => this.#native.getFpu());
  }

  /**
   * Sets FPU and SSE state.
   *
   * @example
   * ```ts
   * vcpu.setFpu({ ...vcpu.getFpu(), mxcsr: 0x1f80 });
   * ```
   */
  setFpu(fpu: Fpu): void {
    this.#call('setFpu', () => this.#native.setFpu(fpu));
  }

  /**
   * Reads MSRs by index.
   *
   * @example
   * ```ts
   * const [tsc] = vcpu.getMsrs([0x10]); // IA32_TIME_STAMP_COUNTER
   * ```
   */
  getMsrs(indices: readonly number[]): Msr[] {
    return this.#call('getMsrs', () => this.#native.getMsrs([...indices]));
  }

  /**
   * Writes MSRs.
   *
   * @example
   * ```ts
   * vcpu.setMsrs([{ index: 0xc0000102, data: 0n }]); // KERNEL_GS_BASE
   * ```
   */
  setMsrs(msrs: readonly Msr[]): void {
    this.#call('setMsrs', () => this.#native.setMsrs([...msrs]));
  }

  /**
   * `KVM_SET_CPUID2` (a new vcpu starts with the host's supported CPUID).
   *
   * @example
   * ```ts
   * vcpu.setCpuid(kvm.supportedCpuid().filter((e) => e.function !== 0x40000000));
   * ```
   */
  setCpuid(entries: readonly CpuidEntry[]): void {
    this.#call('setCpuid', () => this.#native.setCpuid([...entries]));
  }

  /**
   * The local APIC's registers (needs `createVm({ irqchip: true })`).
   *
   * @example
   * ```ts
   * const id = vcpu.getLapic().regs[0x23]; // APIC ID register, bits 31:24
   * ```
   */
  getLapic(): Lapic {
    return this.#call('getLapic', () => this.#native.getLapic());
  }

  /**
   * Sets the local APIC's registers.
   *
   * @example
   * ```ts
   * vcpu.setLapic(vcpu.getLapic());
   * ```
   */
  setLapic(lapic: Lapic): void {
    this.#call('setLapic', () => this.#native.setLapic(lapic));
  }

  /**
   * Pending exceptions, interrupts, NMIs, SMM state.
   *
   * @example
   * ```ts
   * const pending = vcpu.getVcpuEvents().exception.pending;
   * ```
   */
  getVcpuEvents(): VcpuEvents {
    return this.#call('getVcpuEvents', () => this.#native.getVcpuEvents());
  }

  /**
   * Sets pending events.
   *
   * @example
   * ```ts
   * vcpu.setVcpuEvents(vcpu.getVcpuEvents());
   * ```
   */
  setVcpuEvents(events: VcpuEvents): void {
    this.#call('setVcpuEvents', () => this.#native.setVcpuEvents(events));
  }

  /**
   * `KVM_MP_STATE_*` (0 runnable, 1 uninitialized, 2 INIT received, 3 halted, …).
   *
   * @example
   * ```ts
   * if (vcpu.getMpState() === 1) vcpu.setMpState(0); // an AP waiting for INIT: make it runnable
   * ```
   */
  getMpState(): number {
    return this.#call('getMpState', () => this.#native.getMpState());
  }

  /**
   * Sets the multiprocessing state.
   *
   * @example
   * ```ts
   * vcpu.setMpState(0); // KVM_MP_STATE_RUNNABLE
   * ```
   */
  setMpState(state: number): void {
    this.#call('setMpState', () => this.#native.setMpState(state));
  }

  /**
   * Debug registers DR0–3, DR6, DR7.
   *
   * @example
   * ```ts
   * const { dr6, dr7 } = vcpu.getDebugRegs();
   * ```
   */
  getDebugRegs(): DebugRegs {
    return this.#call('getDebugRegs', () => this.#native.getDebugRegs());
  }

  /**
   * Sets debug registers.
   *
   * @example
   * ```ts
   * vcpu.setDebugRegs({ ...vcpu.getDebugRegs(), dr7: 0n });
   * ```
   */
  setDebugRegs(regs: DebugRegs): void {
    this.#call('setDebugRegs', () => this.#native.setDebugRegs(regs));
  }

  /**
   * Single-step and breakpoints, reported as `Debug` exits.
   *
   * @example
   * ```ts
   * vcpu.setGuestDebug({ enable: true, singleStep: true });
   * const exit = vcpu.run(); // { kind: 'Debug', pc, ... } after one instruction
   * ```
   */
  setGuestDebug(debug: GuestDebug): void {
    this.#call('setGuestDebug', () => this.#native.setGuestDebug(debug));
  }

  /**
   * The 4096-byte XSAVE area.
   *
   * @example
   * ```ts
   * const saved = vcpu.getXsave();
   * vcpu.setXsave(saved);
   * ```
   */
  getXsave(): Uint8Array {
    return this.#call('getXsave', () => this.#native.getXsave());
  }

  /**
   * Sets the XSAVE area (4096 bytes).
   *
   * @example
   * ```ts
   * vcpu.setXsave(vcpu.getXsave());
   * ```
   */
  setXsave(xsave: Uint8Array): void {
    this.#call('setXsave', () => this.#native.setXsave(xsave));
  }

  /**
   * Extended control registers (XCR0).
   *
   * @example
   * ```ts
   * const xcr0 = vcpu.getXcrs().find((x) => x.xcr === 0)?.value;
   * ```
   */
  getXcrs(): Xcr[] {
    return this.#call('getXcrs', () => this.#native.getXcrs());
  }

  /**
   * Sets extended control registers.
   *
   * @example
   * ```ts
   * vcpu.setXcrs([{ xcr: 0, value: 0x3n }]); // x87 and SSE state
   * ```
   */
  setXcrs(xcrs: readonly Xcr[]): void {
    this.#call('setXcrs', () => this.#native.setXcrs([...xcrs]));
  }

  /**
   * Queues external interrupt `vector` (without the in-kernel irqchip).
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'Hlt') vcpu.interrupt(0x20); // wake it with vector 0x20
   * ```
   */
  interrupt(vector: number): void {
    this.#call('interrupt', () => this.#native.interrupt(vector));
  }

  /**
   * Queues a non-maskable interrupt.
   *
   * @example
   * ```ts
   * vcpu.nmi();
   * ```
   */
  nmi(): void {
    this.#call('nmi', () => this.#native.nmi());
  }

  /**
   * Puts this vcpu in 64-bit long mode: a flat GDT at 0x500, an empty IDT at 0x520 (any
   * exception is a triple fault, `Shutdown`), page tables at 0x9000–0xEFFF identity
   * mapping the first 4 GiB with 2 MiB pages (so the LAPIC at 0xFEE00000 is reachable).
   * With `rip`, the general registers are reset too: all 0 but RIP, RSP and RFLAGS (2).
   * Guest RAM must cover `[0, 0xF000)`.
   *
   * @example
   * ```ts
   * vm.addMemory({ guestAddress: 0, size: 2 << 20 });
   * vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
   * ```
   */
  setupLongMode(options: LongModeOptions = {}): void {
    const { rip, rsp } = options ?? {};
    if (rip === undefined) {
      this.#call('setupLongMode', () => this.#native.setupLongMode());
      if (rsp !== undefined) this.setRegs({ rsp });
      return;
    }
    const start = toU64(rip, 'rip', undefined, 'setupLongMode');
    const stack = rsp === undefined ? undefined : toU64(rsp, 'rsp', undefined, 'setupLongMode');
    this.#call('setupLongMode', () => this.#native.setupLongMode(start, stack));
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
    return this.#native.closed;
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
    // empty, never dangling. (Not while runAsync's thread may still be using it.)
    const detach = !this.#closed && !this.#async ? (this.#kvmRun ?? undefined) : undefined;
    this.#views.clear();
    this.#closed = true;
    this.#last = NONE;
    this.#native.close(detach);
    this.#vm.forgetVcpu(this);
  }

  /** `using vcpu = …` closes it at the end of the scope. */
  [dispose](): void {
    this.close();
  }

  /** `call`, refused (`EBUSY`) while runAsync owns the vcpu, outside its handlers. */
  #call<T>(op: string, f: () => T): T {
    if (this.#async) this.#checkIdle(op);
    return call(op, f);
  }

  /** While runAsync owns the vcpu, only its handlers may use it. */
  #checkIdle(op: string): void {
    if (this.#async && !this.#inHandler) {
      throw new VcpuError('EBUSY', op, `${op}: the vcpu is running on its thread (runAsync); stop it first`);
    }
  }

  /** Running or completing exits belongs to runAsync's thread while it runs, even inside its handlers. */
  #checkNotRunning(op: string): void {
    if (this.#async) {
      throw new VcpuError('EBUSY', op, `${op}: the vcpu is running on its thread (runAsync); stop it first`);
    }
  }

  #guard<T>(op: string, f: () => T): T {
    this.#thrown = undefined;
    try {
      return f();
    } catch (e) {
      // A handler's own error propagates unchanged; anything else becomes a VcpuError.
      const thrown = this.#thrown as { error: unknown } | undefined;
      this.#thrown = undefined;
      if (thrown) throw thrown.error;
      throw toVcpuError(e, op);
    }
  }

  /**
   * Io/Mmio after `run()`. Over views of kvm_run the whole exit is handled here, with
   * no native call; with a scratch copy (Electron) the native side calls back per element.
   */
  #handleAccess(op: 'handleIo' | 'handleMmio', kind: 'Io' | 'Mmio', fn: IoHandler): void {
    this.#checkNotRunning(op);
    if (this.#scratch) {
      if (kind === 'Io') this.#ioHandler = fn;
      else this.#mmioHandler = fn;
      this.#last = NONE;
      this.#guard(op, () =>
        kind === 'Io' ? this.#native.handleIo(this.#onIo) : this.#native.handleMmio(this.#onMmio),
      );
      return;
    }
    this.#checkPending(op, kind);
    this.#dispatch(fn);
  }

  /** The last exit must be `kind` and not handled yet; it is taken. */
  #checkPending(op: string, kind: 'Io' | 'Mmio' | 'Hypercall'): void {
    this.#checkNotRunning(op);
    if (this.#closed) throw new VcpuError('ECLOSED', op, `${op}: the vcpu is closed`);
    if (this.#last !== CODE[kind]) throw new VcpuError('EINVAL', op, `${op} must follow a run() that returned ${kind}`);
    this.#last = NONE;
  }

  /** Calls `fn` for each element of the access the exit record describes. */
  #dispatch(fn: IoHandler): void {
    const r = this.#exit;
    const address = r[0];
    const size = r[1];
    const isWrite = r[2] === 1;
    const count = r[3];
    const offset = r[4];
    const p = this.#params;
    for (let i = 0; i < count; i++) {
      p.address = address;
      p.size = size as IoParams['size'];
      p.operation = isWrite ? 'write' : 'read';
      p.data = this.#view(offset + i * size, size);
      fn(p);
    }
  }

  #view(offset: number, size: number): Uint8Array {
    if (this.#scratch) return this.#scratch.subarray(0, size);
    const key = offset * 16 + size;
    let view = this.#views.get(key);
    if (!view) {
      view = new Uint8Array(this.#kvmRun!, offset, size);
      this.#views.set(key, view);
    }
    return view;
  }

  /** Wraps a handler called from native code: its error is kept to be rethrown as is. */
  #trampoline(f: () => void): () => void {
    return () => {
      try {
        f();
      } catch (error) {
        this.#thrown = { error };
        throw error;
      }
    };
  }

  readonly #onIo = this.#trampoline(() => this.#dispatch(this.#ioHandler));
  readonly #onMmio = this.#trampoline(() => this.#dispatch(this.#mmioHandler));
  readonly #onHypercall = this.#trampoline(() => this.#hypercallHandler(this.#abi));
}

export { VcpuError };
