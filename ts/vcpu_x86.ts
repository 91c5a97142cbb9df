/**
 * `VcpuX86_64`, an x86 vcpu as crosvm's trait of that name: the x86 state
 * ({@link VcpuX86State}), interrupt injection and readiness, address translation, MSR
 * exits, and a start in long mode.
 * @packageDocumentation
 */
import { toU64 } from './hypercall';
import { checkOptions } from './options';
import type { RegValue } from './types';
import type { MsrHandler } from './exit_channel';
import { VcpuX86State } from './vcpu_state';

/** Where to start after {@link VcpuX86_64.setupLongMode}. */
export interface LongModeOptions {
  /** Instruction pointer. */
  rip?: RegValue;
  /** Stack pointer. */
  rsp?: RegValue;
}

/** What {@link VcpuX86_64.translateGva} says of a guest virtual address. */
export interface Translation {
  /** The guest physical address (meaningful when `valid`). */
  gpa: number;
  /** Whether the address is mapped. */
  valid: boolean;
  /** Whether the mapping allows writes. */
  writeable: boolean;
  /** Whether user mode may use the mapping. */
  usermode: boolean;
}

/**
 * An x86-64 vcpu: the trait ({@link Vcpu}), its state, interrupts, translation, MSR
 * exits and long mode. What {@link Vm.createVcpu} makes on an x86-64 host.
 *
 * @example
 * ```ts
 * const vcpu = vm.createVcpu(0); // a VcpuX86_64 here
 * vcpu.setupLongMode({ rip: 0x1000 });
 * ```
 */
export class VcpuX86_64 extends VcpuX86State {
  /**
   * After an `MsrAccess` exit (a VM made with `userspaceMsr: true`): gives `fn` the
   * access. For a read, `fn` sets `m.data`, which the guest gets in EDX:EAX;
   * `m.fault = true` gives the guest #GP instead. The answer is in the vcpu when this
   * returns.
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'MsrAccess') vcpu.handleMsr((m) => { if (!m.write) m.data = 42n; });
   * ```
   */
  handleMsr(fn: MsrHandler): void {
    this.answerMsr(fn);
  }

  /**
   * Injects external interrupt `vector` (`KVM_INTERRUPT`, without the in-kernel
   * irqchip). As crosvm's `interrupt()`, it throws `EAGAIN` unless
   * {@link VcpuX86_64.readyForInterrupt}: request the window and inject on
   * `IrqWindowOpen`.
   *
   * @example
   * ```ts
   * if (vcpu.readyForInterrupt()) vcpu.interrupt(0x20);
   * else vcpu.setInterruptWindowRequested(true); // then run() exits with IrqWindowOpen
   * ```
   */
  interrupt(vector: number): void {
    this.call('interrupt', () => this.native.interrupt(vector));
  }

  /**
   * Injects a non-maskable interrupt (`KVM_NMI`).
   *
   * @example
   * ```ts
   * vcpu.nmi();
   * ```
   */
  nmi(): void {
    this.call('nmi', () => this.native.nmi());
  }

  /**
   * Whether the guest can take an external interrupt now: KVM's
   * `ready_for_interrupt_injection` and the guest's IF, as of the last exit.
   *
   * @example
   * ```ts
   * if (vcpu.run().kind === 'Hlt' && vcpu.readyForInterrupt()) vcpu.interrupt(0x40);
   * ```
   */
  readyForInterrupt(): boolean {
    return this.call('readyForInterrupt', () => this.native.readyForInterrupt());
  }

  /**
   * Sets `kvm_run.request_interrupt_window`: while set, the next run exits with
   * `{ kind: 'IrqWindowOpen' }` as soon as the guest can take an interrupt.
   *
   * @example
   * ```ts
   * vcpu.setInterruptWindowRequested(true);
   * if (vcpu.run().kind === 'IrqWindowOpen') vcpu.interrupt(0x40);
   * ```
   */
  setInterruptWindowRequested(requested: boolean): void {
    this.call('setInterruptWindowRequested', () => this.native.setInterruptWindowRequested(!!requested));
  }

  /**
   * Translates a guest virtual address through the guest's current page tables
   * (`KVM_TRANSLATE`).
   *
   * @example
   * ```ts
   * const { gpa, valid } = vcpu.translateGva(0x1000n);
   * ```
   */
  translateGva(gva: bigint | number): Translation {
    const t = this.call('translateGva', () => this.native.translateGva(toU64(gva, 'gva', undefined, 'translateGva')));
    return { gpa: Number(t.gpa), valid: t.valid, writeable: t.writeable, usermode: t.usermode };
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
    const { rip, rsp } = checkOptions<LongModeOptions>('setupLongMode', options, ['rip', 'rsp']);
    if (rip === undefined) {
      this.call('setupLongMode', () => this.native.setupLongMode());
      if (rsp !== undefined) this.setRegs({ rsp });
      return;
    }
    const start = toU64(rip, 'rip', undefined, 'setupLongMode');
    const stack = rsp === undefined ? undefined : toU64(rsp, 'rsp', undefined, 'setupLongMode');
    this.call('setupLongMode', () => this.native.setupLongMode(start, stack));
  }
}
