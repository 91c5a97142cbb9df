/**
 * The x86 register and device state of a vcpu, beyond the trait: what every VMM needs,
 * as get/set pairs. {@link VcpuX86_64} adds interrupts, translation and long mode.
 * @packageDocumentation
 */
import { toU64 } from './hypercall';
import { checkOptions, mergePartial } from './options';
import { Vcpu } from './vcpu';
import type {
  CpuidEntry,
  DebugRegs,
  Fpu,
  GuestDebug,
  Lapic,
  Msr,
  RegValue,
  Regs,
  Sregs,
  VcpuEvents,
  Xcr,
} from './types';

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

/** `T` with every field optional, also inside nested objects. */
export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> | T[K] : T[K] };

const GUEST_DEBUG_KEYS: readonly (keyof GuestDebug & string)[] = [
  'enable',
  'singleStep',
  'softwareBreakpoints',
  'hardwareBreakpoints',
];

/** Register, MSR, APIC, event, debug and XSAVE state of an x86 vcpu (see {@link VcpuX86_64}). */
export abstract class VcpuX86State extends Vcpu<Regs> {
  /**
   * General-purpose registers (`rax` … `r15`, `rip`, `rflags`).
   *
   * @example
   * ```ts
   * const { rip, rax } = vcpu.getRegs();
   * ```
   */
  getRegs(): Regs {
    return this.call('getRegs', () => this.native.getRegs());
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
    const merged = mergePartial('setRegs', this.getRegs(), regs) as Record<keyof Regs, RegValue>;
    const full = {} as Regs;
    for (const n of REG_NAMES) full[n] = toU64(merged[n], n, undefined, 'setRegs');
    this.call('setRegs', () => this.native.setRegs(full));
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
    return this.call('getSregs', () => this.native.getSregs());
  }

  /**
   * Sets special registers. Missing fields keep their current values, also inside a
   * segment or table (`vcpu.setSregs({ cs: { base: 0n } })`).
   *
   * @example
   * ```ts
   * const { cs } = vcpu.getSregs();
   * vcpu.setSregs({ cs: { ...cs, base: 0n, selector: 0 } }); // real mode at CS = 0
   * ```
   */
  setSregs(sregs: DeepPartial<Sregs>): void {
    const full = mergePartial('setSregs', this.getSregs(), sregs);
    this.call('setSregs', () => this.native.setSregs(full));
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
    return this.call('getFpu', () => this.native.getFpu());
  }

  /**
   * Sets FPU and SSE state; missing fields keep their current values.
   *
   * @example
   * ```ts
   * vcpu.setFpu({ mxcsr: 0x1f80 });
   * ```
   */
  setFpu(fpu: Partial<Fpu>): void {
    const full = mergePartial('setFpu', this.getFpu(), fpu);
    this.call('setFpu', () => this.native.setFpu(full));
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
    return this.call('getMsrs', () => this.native.getMsrs([...indices]));
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
    this.call('setMsrs', () => this.native.setMsrs([...msrs]));
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
    this.call('setCpuid', () => this.native.setCpuid([...entries]));
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
    return this.call('getLapic', () => this.native.getLapic());
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
    this.call('setLapic', () => this.native.setLapic(lapic));
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
    return this.call('getVcpuEvents', () => this.native.getVcpuEvents());
  }

  /**
   * Sets pending events; missing fields keep their current values, also inside
   * `exception`, `interrupt`, `nmi` and `smi`.
   *
   * @example
   * ```ts
   * vcpu.setVcpuEvents({ nmi: { masked: 1 } });
   * ```
   */
  setVcpuEvents(events: DeepPartial<VcpuEvents>): void {
    const full = mergePartial('setVcpuEvents', this.getVcpuEvents(), events);
    this.call('setVcpuEvents', () => this.native.setVcpuEvents(full));
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
    return this.call('getMpState', () => this.native.getMpState());
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
    this.call('setMpState', () => this.native.setMpState(state));
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
    return this.call('getDebugRegs', () => this.native.getDebugRegs());
  }

  /**
   * Sets debug registers; missing fields keep their current values.
   *
   * @example
   * ```ts
   * vcpu.setDebugRegs({ dr7: 0n });
   * ```
   */
  setDebugRegs(regs: Partial<DebugRegs>): void {
    const full = mergePartial('setDebugRegs', this.getDebugRegs(), regs);
    this.call('setDebugRegs', () => this.native.setDebugRegs(full));
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
    const d = checkOptions<GuestDebug>('setGuestDebug', debug, GUEST_DEBUG_KEYS);
    this.call('setGuestDebug', () => this.native.setGuestDebug(d));
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
    return this.call('getXsave', () => this.native.getXsave());
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
    this.call('setXsave', () => this.native.setXsave(xsave));
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
    return this.call('getXcrs', () => this.native.getXcrs());
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
    this.call('setXcrs', () => this.native.setXcrs([...xcrs]));
  }

  /**
   * The vcpu's CPUID table (`KVM_GET_CPUID2`).
   *
   * @example
   * ```ts
   * const leaf1 = vcpu.getCpuid().find((e) => e.function === 1);
   * ```
   */
  getCpuid(): CpuidEntry[] {
    return this.call('getCpuid', () => this.native.getCpuid());
  }
}
