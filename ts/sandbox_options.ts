/**
 * The options of {@link Sandbox.create} and {@link Sandbox.restore}, and their checks.
 * @internal
 * @packageDocumentation
 */
import { VcpuError } from './errors';
import { checkFunction, parseSize } from './options';
import type { SnapshotKey } from './snapshot_options';
import type { SandboxValue } from './sandbox_values';
import type { Vm } from './vm';

const MIN_MEMORY = 4 << 20;
const MAX_MEMORY = 1 << 30;

/** A host function a guest may call with `vcpu_host_call(name, …)`. */
export type HostFunction = (...args: SandboxValue[]) => SandboxValue | void | Promise<SandboxValue | void>;

/** Options of {@link Sandbox.create}. */
export interface SandboxOptions {
  /** The guest: an ELF built with `npx vcpu build-guest`, as a path or its bytes. */
  guest: string | Uint8Array;
  /** Guest RAM: 4 MiB to 1 GiB, rounded up to 2 MiB (default `'16M'`). */
  memory?: number | string;
  /** The host functions the guest may call, by name. */
  host?: Record<string, HostFunction>;
  /** How long one call (with its host calls) may run before `ETIMEDOUT`; default 1000. */
  timeoutMs?: number;
}

/** Options of {@link Sandbox.restore}. */
export interface SandboxRestoreOptions {
  /** As {@link SandboxOptions.host}. */
  host?: Record<string, HostFunction>;
  /** As {@link SandboxOptions.timeoutMs}. */
  timeoutMs?: number;
  /** The key the snapshot was signed with, if it was. */
  key?: SnapshotKey;
}

/** The sandbox machine and its SDK are x86-64's for now. */
export function x86Only(op: string): void {
  if (process.arch !== 'x64') {
    throw new VcpuError('ENOTSUP', op, `${op}: sandboxes run on x86-64 hosts for now (this is ${process.arch})`);
  }
}

export function memorySize(op: string, memory: number | string): number {
  const size = parseSize(memory, op);
  if (!Number.isSafeInteger(size) || size < MIN_MEMORY || size > MAX_MEMORY) {
    throw new VcpuError('EINVAL', op, `${op}: memory must be 4M to 1G, not ${memory}`);
  }
  return Math.ceil(size / (2 << 20)) * (2 << 20);
}

/** The sandbox's RAM size; EINVAL unless the VM is a sandbox machine's. */
export function checkLayout(vm: Vm, op: string): number {
  const regions = vm.memory;
  const [ram] = regions;
  if (regions.length !== 1 || ram.guestAddress !== 0 || ram.size < MIN_MEMORY || ram.size > MAX_MEMORY) {
    throw new VcpuError('EINVAL', op, `${op}: not a sandbox's memory layout (one RAM region at 0, 4M to 1G)`);
  }
  return ram.size;
}

export function hostFunctions(op: string, host: Record<string, HostFunction> | undefined): Map<string, HostFunction> {
  const map = new Map<string, HostFunction>();
  for (const [name, fn] of Object.entries(host ?? {})) map.set(name, checkFunction(op, `host.${name}`, fn));
  return map;
}

export function checkTimeout(op: string, timeoutMs: number | undefined): number {
  const t = timeoutMs ?? 1000;
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) {
    throw new VcpuError('EINVAL', op, `${op}: timeoutMs must be a number of milliseconds >= 0 (0: none)`);
  }
  return Math.ceil(t);
}
