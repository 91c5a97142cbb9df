/**
 * `VcpuAArch64`, an arm64 vcpu as crosvm's trait of that name: registers by their arm64
 * names and by `KVM_GET/SET_ONE_REG` id, and a start at EL1h.
 * @packageDocumentation
 */
import { toU64 } from './hypercall';
import { checkOptions } from './options';
import { getArm64Regs, setArm64Regs, type Arm64Regs, type NativeArm64Vcpu } from './regs_arm64';
import type { RegValue } from './types';
import { Vcpu } from './vcpu';

/** Where to start after {@link VcpuAArch64.setupEl1}. */
export interface El1Options {
  /** Program counter. */
  pc: RegValue;
  /** The EL1 stack pointer (SP_EL1). */
  sp?: RegValue;
}

/**
 * An arm64 vcpu: the trait ({@link Vcpu}), registers and the EL1 start. What
 * {@link Vm.createVcpu} makes on an arm64 host.
 *
 * @example
 * ```ts
 * const vcpu = vm.createVcpu(0); // a VcpuAArch64 there
 * vcpu.setupEl1({ pc: 0x1000, sp: 0x8000 });
 * ```
 */
export class VcpuAArch64 extends Vcpu<Arm64Regs> {
  /** The native vcpu's arm64 calls (they exist in the arm64 binary only). */
  #arm64(): NativeArm64Vcpu {
    return this.native as unknown as NativeArm64Vcpu;
  }

  /**
   * The general registers by their arm64 names (`x0` … `x30`, `sp`, `pc`, `pstate`,
   * `spEl1`, `elrEl1`, `spsrEl1`).
   *
   * @example
   * ```ts
   * const { pc, x0 } = vcpu.getRegs();
   * ```
   */
  getRegs(): Arm64Regs {
    return this.call('getRegs', () => getArm64Regs(this.#arm64()));
  }

  /**
   * Sets general registers by their arm64 names; missing fields keep their values.
   *
   * @example
   * ```ts
   * vcpu.setRegs({ pc: 0x1000n, x0: 1n });
   * ```
   */
  setRegs(regs: Partial<Record<keyof Arm64Regs, RegValue>>): void {
    this.call('setRegs', () => setArm64Regs(this.#arm64(), regs));
  }

  /**
   * `KVM_GET_ONE_REG` of a 64-bit register (arm64), e.g. a system register by
   * {@link arm64SysReg}.
   *
   * @example
   * ```ts
   * const vbar = vcpu.getOneReg(arm64SysReg(3, 0, 12, 0, 0)); // VBAR_EL1
   * ```
   */
  getOneReg(id: bigint): bigint {
    const native = this.#arm64();
    return this.call('getOneReg', () => native.getOneReg(toU64(id, 'id', undefined, 'getOneReg')));
  }

  /**
   * `KVM_SET_ONE_REG` of a 64-bit register (arm64).
   *
   * @example
   * ```ts
   * vcpu.setOneReg(arm64SysReg(3, 0, 12, 0, 0), 0x8000n); // VBAR_EL1
   * ```
   */
  setOneReg(id: bigint, value: RegValue): void {
    const native = this.#arm64();
    const v = toU64(value, 'value', undefined, 'setOneReg');
    this.call('setOneReg', () => native.setOneReg(toU64(id, 'id', undefined, 'setOneReg'), v));
  }

  /**
   * Starts the vcpu at `pc` in EL1h (interrupts masked, MMU off as after reset) with
   * SP_EL1 at `sp` (arm64).
   *
   * @example
   * ```ts
   * vcpu.setupEl1({ pc: 0x1000, sp: 0x8000 });
   * ```
   */
  setupEl1(options: El1Options): void {
    const native = this.#arm64();
    const { pc, sp = 0n } = checkOptions<El1Options>('setupEl1', options, ['pc', 'sp']);
    const p = toU64(pc, 'pc', undefined, 'setupEl1');
    const s = toU64(sp, 'sp', undefined, 'setupEl1');
    this.call('setupEl1', () => native.setupEl1(p, s));
  }
}
