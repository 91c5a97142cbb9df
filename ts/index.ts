/**
 * `vcpu`: a KVM virtual CPU for Node.js and Electron, shaped after crosvm's
 * `hypervisor::Vcpu` trait.
 *
 * @example
 * ```ts
 * import { Kvm } from 'vcpu';
 * const vm = Kvm.open().createVm();
 * vm.addMemory({ guestAddress: 0, size: 2 << 20 });
 * vm.write(0x1000, new Uint8Array([0xb0, 0x41, 0xe6, 0x10, 0xf4])); // mov al,'A'; out 0x10,al; hlt
 * const vcpu = vm.createVcpu(0);
 * vcpu.setupLongMode({ rip: 0x1000 });
 * const exit = vcpu.runUntil({ io: (p) => console.log(String.fromCharCode(p.data[0])) });
 * console.log(exit.kind); // 'Hlt'
 * ```
 * @packageDocumentation
 */
export { Kvm, DEFAULT_HYPERCALL_PORT, type VmOptions } from './kvm';
export {
  Vm,
  type VmHandle,
  type SnapshotOptions,
  type SnapshotInfo,
  type RestoreOptions,
  type SnapshotKey,
} from './vm';
export type { GdbServer, GdbServerOptions } from './gdb';
export { GuestMemory, type MemoryOptions } from './memory';
export { Vcpu, type ExitHandlers, type LongModeOptions, type MsrAccess, type MsrHandler } from './vcpu';
export { VcpuState, type DeepPartial } from './vcpu_state';
export { VcpuX86, type Translation } from './vcpu_x86';
export { VcpuArm64, type El1Options } from './vcpu_arm64';
export { arm64SysReg, type Arm64Regs } from './regs_arm64';
export { VcpuError } from './errors';
export { VcpuSignalHandle } from './signal';
export { HypercallAbi, type GuestMemoryAccess } from './hypercall';
export type * from './types';
export { bootLinux, restoreLinux, parseSize, LinuxMachine, DEFAULT_CMDLINE, type LinuxOptions } from './linux';
export {
  serveConsole,
  ConsoleHub,
  type ConsoleOptions,
  type ConsolePeer,
  type ConsoleSource,
  type WebConsole,
} from './web_console';
export type { LinuxBootInfo } from '../native/index';
