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
export { Vm, type VmHandle } from './vm';
export type { SnapshotOptions, SnapshotInfo, RestoreOptions, SnapshotKey } from './snapshot_options';
export type { GdbServer, GdbServerOptions } from './gdb';
export { GuestMemory, type MemoryOptions } from './memory';
export { type ExitHandlers, type MsrAccess, type MsrHandler } from './vcpu';
export { VcpuX86State, type DeepPartial } from './vcpu_state';
export { VcpuX86_64, type LongModeOptions, type Translation } from './vcpu_x86';
export { VcpuAArch64, type El1Options } from './vcpu_arm64';
export type { HostVcpu, HostRegs } from './host_arch';
export { IoEvent, IrqEvent, type IoEventOptions } from './vm_events';
import type { HostVcpu } from './host_arch';
import { Vcpu as VcpuTrait } from './vcpu';
export { VcpuTrait };
export { arm64SysReg, type Arm64Regs } from './regs_arm64';
export { VcpuError } from './errors';
export { VcpuSignalHandle } from './signal';
export { HypercallAbi, type GuestMemoryAccess } from './hypercall';
export type * from './types';
export { parseSize } from './options';
export { buildGuest } from './build_guest';
export {
  Sandbox,
  SandboxError,
  SandboxPool,
  type SandboxOptions,
  type SandboxPoolOptions,
  type SandboxRestoreOptions,
  type SandboxValue,
  type HostFunction,
} from './sandbox';
export { VsockHost, type VsockOptions } from './vsock';
export { VirtioDevice, VirtioQueue, type VirtioChain, type VirtioDeviceSpec } from './virtio_device';
export {
  bootLinux,
  restoreLinux,
  LinuxMachine,
  type DiskOptions,
  type NetOptions,
  DEFAULT_CMDLINE,
  type LinuxOptions,
} from './linux';
export {
  serveConsole,
  ConsoleHub,
  type ConsoleOptions,
  type ConsolePeer,
  type ConsoleSource,
  type WebConsole,
} from './web_console';
export type { LinuxBootInfo } from '../native/index';

/**
 * crosvm's `Vcpu` trait. As a value, the class every vcpu is an instance of
 * (`vcpu instanceof Vcpu`); as a type, this host's vcpu: {@link VcpuX86_64} on x86-64,
 * {@link VcpuAArch64} on arm64, each with exactly its architecture's methods.
 */
export const Vcpu = VcpuTrait;
/** This host's vcpu (see the value of the same name). */
export type Vcpu = HostVcpu;
