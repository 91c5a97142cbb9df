/**
 * arm64 registers: {@link VcpuTrait.getRegs} and {@link VcpuTrait.setRegs} by their arm64 names
 * on an arm64 host, and any register by its `KVM_GET/SET_ONE_REG` id.
 * @packageDocumentation
 */
import { toU64 } from './hypercall';
import { mergePartial } from './options';
import type { RegValue } from './types';

/** The general registers of an arm64 vcpu (`vcpu.getRegs<Arm64Regs>()` on arm64). */
export interface Arm64Regs {
  /** x0. */
  x0: bigint;
  /** x1. */
  x1: bigint;
  /** x2. */
  x2: bigint;
  /** x3. */
  x3: bigint;
  /** x4. */
  x4: bigint;
  /** x5. */
  x5: bigint;
  /** x6. */
  x6: bigint;
  /** x7. */
  x7: bigint;
  /** x8. */
  x8: bigint;
  /** x9. */
  x9: bigint;
  /** x10. */
  x10: bigint;
  /** x11. */
  x11: bigint;
  /** x12. */
  x12: bigint;
  /** x13. */
  x13: bigint;
  /** x14. */
  x14: bigint;
  /** x15. */
  x15: bigint;
  /** x16. */
  x16: bigint;
  /** x17. */
  x17: bigint;
  /** x18. */
  x18: bigint;
  /** x19. */
  x19: bigint;
  /** x20. */
  x20: bigint;
  /** x21. */
  x21: bigint;
  /** x22. */
  x22: bigint;
  /** x23. */
  x23: bigint;
  /** x24. */
  x24: bigint;
  /** x25. */
  x25: bigint;
  /** x26. */
  x26: bigint;
  /** x27. */
  x27: bigint;
  /** x28. */
  x28: bigint;
  /** x29. */
  x29: bigint;
  /** The link register. */
  x30: bigint;
  /** SP_EL0. */
  sp: bigint;
  /** The program counter. */
  pc: bigint;
  /** PSTATE (SPSR layout): exception level, DAIF masks, NZCV. */
  pstate: bigint;
  /** The stack pointer of code running at EL1h. */
  spEl1: bigint;
  /** ELR_EL1: where an exception taken to EL1 returns. */
  elrEl1: bigint;
  /** SPSR_EL1: PSTATE saved by an exception taken to EL1. */
  spsrEl1: bigint;
}

/** The binding's arm64 calls (present only in the arm64 build). @internal */
export interface NativeArm64Vcpu {
  getArm64Regs(): BigUint64Array;
  setArm64Regs(values: BigUint64Array): void;
  getOneReg(id: bigint): bigint;
  setOneReg(id: bigint, value: bigint): void;
  setupEl1(pc: bigint, sp: bigint): void;
}

/** {@link Arm64Regs}' keys in the binding's order. */
const NAMES: readonly (keyof Arm64Regs)[] = [
  ...Array.from({ length: 31 }, (_, i) => `x${i}` as keyof Arm64Regs),
  'sp',
  'pc',
  'pstate',
  'spEl1',
  'elrEl1',
  'spsrEl1',
];

/** Whether this process runs on arm64. @internal */
export const ON_ARM64 = process.arch === 'arm64';

/** @internal */
export function getArm64Regs(native: NativeArm64Vcpu): Arm64Regs {
  const values = native.getArm64Regs();
  const regs = {} as Arm64Regs;
  NAMES.forEach((n, i) => (regs[n] = values[i]));
  return regs;
}

/** @internal */
export function setArm64Regs(native: NativeArm64Vcpu, regs: Partial<Record<keyof Arm64Regs, RegValue>>): void {
  const merged = mergePartial('setRegs', getArm64Regs(native), regs) as Record<keyof Arm64Regs, RegValue>;
  native.setArm64Regs(BigUint64Array.from(NAMES, (n) => toU64(merged[n], n, undefined, 'setRegs')));
}

/**
 * The `KVM_GET/SET_ONE_REG` id of arm64 system register (op0, op1, CRn, CRm, op2), for
 * {@link VcpuAArch64.getOneReg}: SCTLR_EL1 is `arm64SysReg(3, 0, 1, 0, 0)`, VBAR_EL1
 * `arm64SysReg(3, 0, 12, 0, 0)`.
 *
 * @example
 * ```ts
 * const sctlr = vcpu.getOneReg(arm64SysReg(3, 0, 1, 0, 0));
 * ```
 */
export function arm64SysReg(op0: number, op1: number, crn: number, crm: number, op2: number): bigint {
  const KVM_REG_ARM64 = 0x6000000000000000n;
  const KVM_REG_SIZE_U64 = 0x0030000000000000n;
  const KVM_REG_ARM64_SYSREG = 0x0013n << 16n;
  const field = (BigInt(op0) << 14n) | (BigInt(op1) << 11n) | (BigInt(crn) << 7n) | (BigInt(crm) << 3n) | BigInt(op2);
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | field;
}
