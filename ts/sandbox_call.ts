/**
 * One sandbox call as a sequence of steps, whatever runs the vcpu (`call` runs it on
 * the JS thread, `callAsync` on a native one): write the call into the mailbox, then
 * for each exit say what comes next: run again, call a host function, or done.
 * @internal
 * @packageDocumentation
 */
import type { HostFunction, Sandbox } from './sandbox';
import { SandboxError } from './sandbox_error';
import {
  checkedAddress,
  CMD_CALL,
  CMD_RESULT,
  decodeValues,
  encodeFrame,
  HC,
  HEADER,
  MAILBOX,
  MAILBOX_SIZE,
  MAX_ARGS,
  type SandboxValue,
} from './sandbox_values';
import type { VcpuExit } from './types';

/** What the driver does next. */
export type Step =
  | { kind: 'run' }
  | { kind: 'host'; name: string; fn: HostFunction; args: SandboxValue[] }
  | { kind: 'done'; value: SandboxValue };

const RUN: Step = { kind: 'run' };
const MAX_NAME = 256;

const EXCEPTIONS = [
  '#DE divide error',
  '#DB debug',
  'NMI',
  '#BP breakpoint',
  '#OF overflow',
  '#BR bound range',
  '#UD invalid opcode',
  '#NM no FPU',
  '#DF double fault',
  'coprocessor overrun',
  '#TS invalid TSS',
  '#NP segment not present',
  '#SS stack fault',
  '#GP general protection fault',
  '#PF page fault',
  'vector 15',
  '#MF x87 error',
  '#AC alignment check',
  '#MC machine check',
  '#XM SIMD error',
  '#VE virtualization exception',
  '#CP control protection',
];

/** A call in progress; `index` -1 is the guest's start, which ends at its READY. */
export class SandboxCall {
  /** Set once the guest holds this call's state: a call that ends otherwise than done breaks the sandbox. */
  started = false;
  finished = false;
  /** Why the call failed, if the guest caused it. */
  failure: SandboxError | undefined;
  /** Where the next frame (a nested call's, a host call's result) may go. */
  readonly end: number;
  readonly #sb: Sandbox;
  readonly op: string;
  readonly #index: number;
  readonly #argc: number;
  readonly #frame: Uint8Array;
  readonly #at: number;
  readonly #memory: number;

  constructor(
    sb: Sandbox,
    op: string,
    index: number,
    args: readonly SandboxValue[],
    memory: number,
    outer?: SandboxCall,
  ) {
    this.#sb = sb;
    this.op = op;
    this.#index = index;
    this.#argc = args.length;
    this.#memory = memory;
    this.#at = outer ? outer.end : MAILBOX + HEADER.size;
    this.#frame = index < 0 ? new Uint8Array(0) : encodeFrame(op, args, this.#at, MAILBOX + MAILBOX_SIZE - this.#at);
    this.end = this.#at + this.#frame.length;
  }

  /** Puts the call in the mailbox; then run. */
  start(): Step {
    const vm = this.#sb.vm;
    this.started = true;
    if (this.#index >= 0) {
      vm.write(this.#at, this.#frame);
      vm.write(MAILBOX + HEADER.cmd, command(CMD_CALL, this.#index, this.#argc, this.#at));
    }
    return RUN;
  }

  /** What an exit of the vcpu means for the call. */
  exited(exit: VcpuExit): Step {
    switch (exit.kind) {
      case 'Hypercall':
        return this.#hypercall();
      case 'Intr':
        throw this.#fail('ETIMEDOUT', `the call ran past its ${this.#sb.timeoutMs} ms`, {
          rip: this.#sb.vcpu.getRegs().rip,
        });
      case 'Shutdown': {
        const rip = this.#sb.vcpu.getRegs().rip;
        throw this.#fail('EFAULT', `the guest triple-faulted at rip 0x${rip.toString(16)}`, { rip });
      }
      default: {
        const rip = this.#sb.vcpu.getRegs().rip;
        throw this.#fail('EFAULT', `the guest stopped with a ${exit.kind} exit at rip 0x${rip.toString(16)}`, { rip });
      }
    }
  }

  /** A host function returned `value`: it goes to the guest; then run. */
  hostDone(value: SandboxValue | void): Step {
    const vm = this.#sb.vm;
    const frame = encodeFrame(this.op, [value ?? undefined], this.end, MAILBOX + MAILBOX_SIZE - this.end);
    vm.write(this.end, frame);
    vm.write(MAILBOX + HEADER.cmd, command(CMD_RESULT, 0, 1, this.end));
    return RUN;
  }

  #hypercall(): Step {
    let id = 0n;
    let args: bigint[] = [];
    this.#sb.vcpu.handleHypercall((abi) => {
      id = abi.hypercallId;
      args = abi.args;
    });
    const op = this.op;
    switch (id) {
      case HC.return:
        if (this.#index < 0) break;
        // The guest waits for its next command: a bad result fails this call only.
        this.finished = true;
        try {
          return { kind: 'done', value: decodeValues(op, this.#read, checkedAddress(op, args[0]), 1, this.#memory)[0] };
        } catch (e) {
          throw new SandboxError(
            'EFAULT',
            op,
            `${op}: the guest returned a value outside its memory (${(e as Error).message})`,
          );
        }
      case HC.ready:
        if (this.#index >= 0) break;
        this.finished = true;
        return { kind: 'done', value: undefined };
      case HC.hostCall:
        return this.#hostCall(args);
      case HC.fault:
        throw this.#fault();
    }
    throw this.#fail('EPROTO', `the guest made hypercall 0x${id.toString(16)} out of turn`, {
      rip: this.#sb.vcpu.getRegs().rip,
    });
  }

  #hostCall([namePtr, nameLen, argsPtr, argc]: bigint[]): Step {
    const op = this.op;
    if (nameLen > BigInt(MAX_NAME) || argc > BigInt(MAX_ARGS)) {
      throw this.#fail(
        'EINVAL',
        `the guest called a host function with a ${nameLen}-byte name and ${argc} arguments (at most ${MAX_NAME} and ${MAX_ARGS})`,
      );
    }
    let name: string;
    let args: SandboxValue[];
    try {
      const nameBytes = this.#read(checkedAddress(op, namePtr), Number(nameLen));
      name = new TextDecoder().decode(nameBytes);
      args = decodeValues(op, this.#read, checkedAddress(op, argsPtr), Number(argc), this.#memory);
    } catch (e) {
      throw this.#fail('EFAULT', `the guest's host call named memory it does not have (${(e as Error).message})`);
    }
    const fn = this.#sb.hostFunction(name);
    if (!fn) throw this.#fail('ENOENT', `the guest called host function '${name}', which the sandbox was not given`);
    return { kind: 'host', name, fn, args };
  }

  /** The exception a ring-0 stub reported, from the CPU's frame on the ring-0 stack. */
  #fault(): SandboxError {
    const { vcpu } = this.#sb;
    const raw = this.#read(Number(vcpu.getRegs().rsp), 7 * 8);
    const frame = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const vector = Number(frame.getBigUint64(0, true));
    const error = frame.getBigUint64(8, true);
    const rip = frame.getBigUint64(16, true);
    let what = `${EXCEPTIONS[vector] ?? `vector ${vector}`} at rip 0x${rip.toString(16)}`;
    let address: bigint | undefined;
    if (vector === 14) {
      address = vcpu.getSregs().cr2;
      what += ` ${error & 16n ? 'fetching' : error & 2n ? 'writing' : 'reading'} 0x${address.toString(16)}`;
    }
    return this.#fail('EFAULT', `the guest faulted: ${what}`, { rip, vector, address });
  }

  #fail(code: string, message: string, at: { rip?: bigint; vector?: number; address?: bigint } = {}): SandboxError {
    this.failure = new SandboxError(code, this.op, `${this.op}: ${message}`, at);
    return this.failure;
  }

  readonly #read = (gpa: number, length: number): Uint8Array => this.#sb.read(gpa, length);
}

/** The mailbox header's command fields: cmd, index, argc, args. */
function command(cmd: number, index: number, argc: number, args: number): Uint8Array {
  const bytes = new Uint8Array(HEADER.args + 8 - HEADER.cmd);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, cmd, true);
  view.setUint32(HEADER.index - HEADER.cmd, index, true);
  view.setUint32(HEADER.argc - HEADER.cmd, argc, true);
  view.setBigUint64(HEADER.args - HEADER.cmd, BigInt(args), true);
  return bytes;
}
