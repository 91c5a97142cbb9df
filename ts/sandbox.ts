/**
 * `Sandbox`: functions in a guest, called from JS. The guest is C built with the SDK
 * (`guests/sdk/`, `npx vcpu build-guest`); it runs at CPL 3 in its own VM and talks
 * to the host through a mailbox in its memory and the port-I/O hypercall ABI. After the
 * guest's `vcpu_init()` the VM's reset point is taken, so `reset()` returns it there in
 * place, touching only the pages written since. docs/sandboxes.md has the design.
 * @packageDocumentation
 */
import { dispose } from './dispose';
import { VcpuError } from './errors';
import type { Kvm } from './kvm';
import { Kvm as KvmClass } from './kvm';
import { bytesOf, checkOptions } from './options';
import type { SnapshotInfo, SnapshotKey } from './snapshot_options';
import { SandboxCall, type Step } from './sandbox_call';
import { SandboxError } from './sandbox_error';
import {
  checkLayout,
  checkTimeout,
  hostFunctions,
  memorySize,
  x86Only,
  type HostFunction,
  type SandboxOptions,
  type SandboxRestoreOptions,
} from './sandbox_options';
import { SandboxPool, type SandboxPoolOptions } from './sandbox_pool';
import { checkedAddress, HEADER, MAGIC, MAILBOX, type SandboxValue } from './sandbox_values';
import { internalsOf } from './vcpu';
import type { VcpuX86_64 } from './vcpu_x86';
import type { Vm } from './vm';

export type { SandboxValue } from './sandbox_values';
export type { HostFunction, SandboxOptions, SandboxRestoreOptions } from './sandbox_options';
export { SandboxError } from './sandbox_error';
export { SandboxPool, type SandboxPoolOptions } from './sandbox_pool';

const MAX_EXPORTS = 4096;
const MAX_NAME = 256;
/** How deep host functions and guest calls may nest. */
const MAX_DEPTH = 64;

let sharedKvm: Kvm | undefined;
function kvm(): Kvm {
  sharedKvm ??= KvmClass.open();
  return sharedKvm;
}

/**
 * Functions in a guest, called from JS.
 *
 * @example
 * ```ts
 * const sb = Sandbox.create({ guest: 'plugin.elf', host: { log: (s) => console.log(s) } });
 * sb.call('add', 2n, 3n); // 5n
 * sb.reset();             // memory and registers as just after vcpu_init()
 * sb.close();
 * ```
 */
export class Sandbox {
  /** @internal */
  readonly vm: Vm;
  /** @internal */
  readonly vcpu: VcpuX86_64;
  /** How long one call may run before `ETIMEDOUT`, in ms (0: no limit). */
  timeoutMs: number;
  readonly #host: Map<string, HostFunction>;
  readonly #exports: Map<string, number>;
  readonly #memory: number;
  /** The calls in progress, innermost last (a host function may call back in). */
  readonly #calls: SandboxCall[] = [];
  /** Why the sandbox refuses calls until reset, if it does. */
  #broken: SandboxError | undefined;
  /** Whether the vcpu waits inside a hypercall KVM has not completed yet. */
  #unsettled = false;
  #closed = false;

  private constructor(
    vm: Vm,
    host: Record<string, HostFunction> | undefined,
    timeoutMs: number | undefined,
    op: string,
  ) {
    this.vm = vm;
    this.#memory = checkLayout(vm, op);
    const [id = 0] = vm.snapshotVcpuIds;
    this.vcpu = vm.createVcpu(id) as VcpuX86_64;
    this.#host = hostFunctions(op, host);
    this.timeoutMs = checkTimeout(op, timeoutMs);
    this.#exports = new Map();
  }

  /**
   * Loads a guest into a new VM, runs it to the end of its `vcpu_init()` and takes the
   * reset point there.
   *
   * @example
   * ```ts
   * const sb = Sandbox.create({ guest: 'fn.elf', memory: '16M', timeoutMs: 100 });
   * ```
   */
  static create(options: SandboxOptions): Sandbox {
    const op = 'Sandbox.create';
    const o = checkOptions<SandboxOptions>(op, options, ['guest', 'memory', 'host', 'timeoutMs']);
    x86Only(op);
    if (o.guest === undefined) throw new VcpuError('EINVAL', op, `${op}: options.guest is required`);
    const elf = bytesOf(op, 'guest', o.guest);
    const size = memorySize(op, o.memory ?? '16M');
    const vm = kvm().createVm();
    try {
      vm.addMemory({ guestAddress: 0, size });
      const sb = new Sandbox(vm, o.host, o.timeoutMs, op);
      internalsOf(sb.vcpu).native.loadSandboxGuest(elf);
      sb.#start(op);
      vm.markResetPoint();
      return sb;
    } catch (e) {
      vm.close();
      throw wrap(e, op);
    }
  }

  /**
   * A sandbox from a file {@link Sandbox.snapshot} wrote: its memory comes copy-on-write
   * from the file, and `reset()` returns to it.
   *
   * @example
   * ```ts
   * const sb = Sandbox.restore('/tmp/plugin.snap', { host: { log: console.log } });
   * ```
   */
  static restore(path: string, options: SandboxRestoreOptions = {}): Sandbox {
    const op = 'Sandbox.restore';
    const o = checkOptions<SandboxRestoreOptions>(op, options, ['host', 'timeoutMs', 'key']);
    x86Only(op);
    const vm = kvm().restoreVm(path, o.key === undefined ? {} : { key: o.key });
    try {
      const sb = new Sandbox(vm, o.host, o.timeoutMs, op);
      sb.#readExports(op);
      return sb;
    } catch (e) {
      vm.close();
      throw wrap(e, op);
    }
  }

  /**
   * A pool of ready sandboxes of one guest (see {@link SandboxPool}).
   *
   * @example
   * ```ts
   * const pool = Sandbox.pool({ guest: 'fn.elf', size: 4 });
   * ```
   */
  static pool(options: SandboxPoolOptions): SandboxPool {
    return new SandboxPool(Sandbox, options);
  }

  /** The guest's exported function names. */
  get exports(): string[] {
    return [...this.#exports.keys()];
  }

  /** Whether {@link Sandbox.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Calls the guest function `name` and returns its result. Throws SandboxError for a
   * fault, a timeout or an unknown name; a host function's own error propagates.
   *
   * @example
   * ```ts
   * sb.call('greet', 'world'); // 'hello, world'
   * ```
   */
  call(name: string, ...args: SandboxValue[]): SandboxValue {
    const c = this.#begin('call', name, args);
    try {
      return this.#drive(c);
    } finally {
      this.#end(c);
    }
  }

  /**
   * {@link Sandbox.call} with the guest on a native thread: the event loop stays free,
   * and host functions may be async.
   *
   * @example
   * ```ts
   * await sb.callAsync('hash', bytes);
   * ```
   */
  async callAsync(name: string, ...args: SandboxValue[]): Promise<SandboxValue> {
    const c = this.#begin('callAsync', name, args);
    try {
      let step = c.start();
      while (step.kind !== 'done') {
        step = step.kind === 'run' ? c.exited(await this.vcpu.runAsync({})) : c.hostDone(await step.fn(...step.args));
      }
      return step.value;
    } finally {
      this.#end(c);
    }
  }

  /**
   * Returns the sandbox to just after the guest's `vcpu_init()` (or to the snapshot it
   * was restored from), in place: only the pages written since are put back. Also what
   * makes a sandbox usable again after a fault or a timeout.
   *
   * @example
   * ```ts
   * sb.reset();
   * ```
   */
  reset(): void {
    this.#idle('reset');
    wrapCall('reset', () => this.vm.reset());
    this.#broken = undefined;
    this.#unsettled = false;
  }

  /**
   * Writes the sandbox, as it is now, to `path` (`Sandbox.restore` reads it back).
   *
   * @example
   * ```ts
   * sb.snapshot('/tmp/plugin.snap');
   * ```
   */
  snapshot(path: string, options: { key?: SnapshotKey } = {}): SnapshotInfo {
    this.#idle('snapshot');
    if (this.#broken) throw this.#refusal('snapshot');
    this.#settle();
    return this.vm.snapshot(path, options);
  }

  /** Closes the sandbox's VM. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.vm.close();
  }

  /** `using sb = …` closes it at the end of the scope. */
  [dispose](): void {
    this.close();
  }

  /** Runs the guest's start (its `vcpu_init()`, which may call host functions) to its READY. */
  #start(op: string): void {
    const c = new SandboxCall(this, op, -1, [], this.#memory);
    if (this.timeoutMs > 0) internalsOf(this.vcpu).native.armDeadline(this.timeoutMs);
    this.#calls.push(c);
    try {
      this.#drive(c);
    } finally {
      this.#calls.pop();
      internalsOf(this.vcpu).native.disarmDeadline();
    }
    this.#readExports(op);
    this.#unsettled = true;
    this.#settle();
  }

  /** Runs a call on this thread to its result. */
  #drive(c: SandboxCall): SandboxValue {
    let step = c.start();
    while (step.kind !== 'done')
      step = step.kind === 'run' ? c.exited(this.vcpu.run()) : c.hostDone(this.#hostSync(step));
    return step.value;
  }

  /** The guest's export table, as its runtime listed it in the mailbox header. */
  #readExports(op: string): void {
    const raw = this.read(MAILBOX, HEADER.size);
    const header = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (header.getBigUint64(HEADER.magic, true) !== MAGIC) {
      throw new SandboxError(
        'EINVAL',
        op,
        `${op}: the guest is not a sandbox guest (no vcpu_guest runtime in its mailbox)`,
      );
    }
    const count = header.getUint32(HEADER.exportCount, true);
    if (count > MAX_EXPORTS)
      throw new SandboxError('EINVAL', op, `${op}: the guest lists ${count} exports (at most ${MAX_EXPORTS})`);
    const at = checkedAddress(op, header.getBigUint64(HEADER.exports, true));
    const table = this.read(at, count * 16);
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    for (let i = 0; i < count; i++) {
      this.#exports.set(this.#name(op, checkedAddress(op, view.getBigUint64(i * 16, true))), i);
    }
  }

  /** A NUL-terminated name of at most MAX_NAME bytes in guest memory. */
  #name(op: string, at: number): string {
    const bytes = this.read(at, Math.min(MAX_NAME + 1, Math.max(0, this.#memory - at)));
    const end = bytes.indexOf(0);
    if (end < 0) {
      throw new SandboxError(
        'EINVAL',
        op,
        `${op}: a name in the guest at 0x${at.toString(16)} is not NUL-terminated within ${MAX_NAME} bytes`,
      );
    }
    return new TextDecoder().decode(bytes.subarray(0, end));
  }

  /** Checks and starts a call (innermost if a host function calls back in). */
  #begin(op: string, name: string, args: SandboxValue[]): SandboxCall {
    if (this.#closed) throw new VcpuError('ECLOSED', op, `${op}: the sandbox is closed`);
    if (this.#broken) throw this.#refusal(op);
    const index = this.#exports.get(name);
    if (index === undefined) {
      throw new SandboxError(
        'ENOENT',
        op,
        `${op}: the guest exports no function '${String(name)}' (it has: ${this.exports.join(', ') || 'none'})`,
      );
    }
    if (this.#calls.length >= MAX_DEPTH) {
      throw new SandboxError('ELOOP', op, `${op}: calls nested ${MAX_DEPTH} deep between host and guest`);
    }
    const outer = this.#calls[this.#calls.length - 1];
    const c = new SandboxCall(this, op, index, args, this.#memory, outer);
    if (!outer && this.timeoutMs > 0) internalsOf(this.vcpu).native.armDeadline(this.timeoutMs);
    this.#calls.push(c);
    return c;
  }

  /** Ends a call: one the guest did not finish breaks the sandbox until reset. */
  #end(c: SandboxCall): void {
    this.#calls.pop();
    if (c.started) this.#unsettled = true;
    if (c.started && !c.finished && !this.#broken) {
      this.#broken =
        c.failure ??
        new SandboxError('ECANCELED', c.op, `${c.op}: the call was abandoned midway (a host function threw)`);
    }
    if (this.#calls.length === 0) internalsOf(this.vcpu).native.disarmDeadline();
  }

  /** A host call made from a synchronous call. */
  #hostSync(step: Step & { kind: 'host' }): SandboxValue | void {
    const result = step.fn(...step.args);
    if (result instanceof Promise) {
      result.catch(() => undefined);
      throw new SandboxError('EINVAL', 'call', `call: host function '${step.name}' returned a promise; use callAsync`);
    }
    return result;
  }

  /**
   * @internal A copy of guest RAM at `gpa` (EFAULT outside it). Not a zero-copy view:
   * while one lives, the VM counts every page as written and a reset puts back all.
   */
  read(gpa: number, length: number): Uint8Array {
    return this.vm.read(gpa, length);
  }

  /** @internal The host function the guest asked for, or undefined. */
  hostFunction(name: string): HostFunction | undefined {
    return this.#host.get(name);
  }

  /** Refuses `op` while a call runs (from a host function) or after close. */
  #idle(op: string): void {
    if (this.#closed) throw new VcpuError('ECLOSED', op, `${op}: the sandbox is closed`);
    if (this.#calls.length > 0) throw new VcpuError('EBUSY', op, `${op}: a call is in progress`);
  }

  #refusal(op: string): SandboxError {
    const b = this.#broken!;
    return new SandboxError(b.code, op, `${op}: the sandbox needs reset() after: ${b.message}`, b);
  }

  /**
   * Completes the hypercall the guest waits in (KVM finishes it on the next entry), so
   * that a snapshot or the reset point holds the guest just past it, ready to read its
   * next command from the mailbox.
   */
  #settle(): void {
    if (!this.#unsettled) return;
    this.vcpu.setImmediateExit(true);
    try {
      this.vcpu.run();
    } finally {
      this.vcpu.setImmediateExit(false);
    }
    this.#unsettled = false;
  }
}

function wrap(e: unknown, op: string): unknown {
  return e instanceof VcpuError ? e : e instanceof Error ? new VcpuError('EINVAL', op, `${op}: ${e.message}`) : e;
}

function wrapCall<T>(op: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw wrap(e, op);
  }
}
