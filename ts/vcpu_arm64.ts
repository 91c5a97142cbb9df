/**
 * What an arm64 vcpu adds: any register by its `KVM_GET/SET_ONE_REG` id, and a start at
 * EL1h. {@link Vcpu} extends it; on other hosts these throw `ENOTSUP`.
 * @packageDocumentation
 */
import { VcpuError } from './errors';
import { toU64 } from './hypercall';
import { checkOptions } from './options';
import { ON_ARM64, type NativeArm64Vcpu } from './regs_arm64';
import type { RegValue } from './types';
import { VcpuX86 } from './vcpu_x86';

/** Where to start after {@link VcpuArm64.setupEl1}. */
export interface El1Options {
  /** Program counter. */
  pc: RegValue;
  /** The EL1 stack pointer (SP_EL1). */
  sp?: RegValue;
}

/** Registers by id and the EL1 start of an arm64 vcpu (see {@link Vcpu}). */
export abstract class VcpuArm64 extends VcpuX86 {
  #arm64(op: string): NativeArm64Vcpu {
    if (!ON_ARM64) throw new VcpuError('ENOTSUP', op, `${op}: arm64 only (this host is ${process.arch})`);
    return this.native as unknown as NativeArm64Vcpu;
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
    const native = this.#arm64('getOneReg');
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
    const native = this.#arm64('setOneReg');
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
    const native = this.#arm64('setupEl1');
    const { pc, sp = 0n } = checkOptions<El1Options>('setupEl1', options, ['pc', 'sp']);
    const p = toU64(pc, 'pc', undefined, 'setupEl1');
    const s = toU64(sp, 'sp', undefined, 'setupEl1');
    this.call('setupEl1', () => native.setupEl1(p, s));
  }
}
