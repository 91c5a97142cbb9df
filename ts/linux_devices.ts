/**
 * The virtio devices {@link bootLinux} places on the machine's MMIO bus and announces
 * on the kernel command line (`virtio_mmio.device=4K@ADDR:IRQ`, in order: the first
 * disk is `/dev/vda`).
 * @internal
 * @packageDocumentation
 */
import { call, VcpuError } from './errors';
import type { NativeDevices } from './native';
import { objectArg } from './options';
import type { Vm } from './vm';

/** A virtio-blk disk over a raw image file. */
export interface DiskOptions {
  /** The image: its size must be a multiple of 512 bytes. */
  path: string;
  /** The guest may read it only: writes fail with an I/O error (default false). */
  readOnly?: boolean;
}

/** One device to attach. */
interface VirtioSpec {
  kind: 'block' | 'rng' | 'console';
  path?: string;
  readOnly?: boolean;
}

/** The devices the options ask for, checked; ENOTSUP for the ones not built yet. */
export function virtioSpecs(
  op: string,
  o: { disks?: unknown; rng?: unknown; vsock?: unknown; net?: unknown; console?: unknown; devices?: unknown },
): VirtioSpec[] {
  for (const name of ['vsock', 'net', 'devices'] as const) {
    if (o[name] !== undefined) {
      throw new VcpuError('ENOTSUP', op, `${op}: the ${name} option is not available yet (disks, rng and console are)`);
    }
  }
  if (o.console !== undefined && o.console !== 'serial' && o.console !== 'virtio') {
    throw new VcpuError('EINVAL', op, `${op}: console must be 'serial' or 'virtio'`);
  }
  const specs: VirtioSpec[] = [];
  if (o.disks !== undefined) {
    if (!Array.isArray(o.disks))
      throw new VcpuError('EINVAL', op, `${op}: disks must be an array of { path, readOnly? }`);
    o.disks.forEach((d: unknown, i) => {
      const disk = objectArg(op, `disks[${i}]`, d);
      for (const key of Object.keys(disk)) {
        if (key !== 'path' && key !== 'readOnly') {
          throw new VcpuError('EINVAL', op, `${op}: unknown option 'disks[${i}].${key}' (known: path, readOnly)`);
        }
      }
      if (typeof disk.path !== 'string' || disk.path === '') {
        throw new VcpuError('EINVAL', op, `${op}: disks[${i}].path must be the image's path`);
      }
      specs.push({ kind: 'block', path: disk.path, readOnly: disk.readOnly === true });
    });
  }
  if (o.rng !== undefined && typeof o.rng !== 'boolean') {
    throw new VcpuError('EINVAL', op, `${op}: rng must be true or false`);
  }
  if (o.rng) specs.push({ kind: 'rng' });
  if (o.console === 'virtio') specs.push({ kind: 'console' });
  return specs;
}

/** `cmdline` with an entry announcing each of `count` devices where they will go. */
export function announceVirtio(vm: Vm, count: number, cmdline: string): string {
  if (count === 0) return cmdline;
  const slots = call('bootLinux', () => vm.native.virtioSlots(count));
  const entries = slots.map((s) => `virtio_mmio.device=4K@0x${s.address.toString(16)}:${s.irq}`);
  return [cmdline, ...entries].join(' ');
}

/** Attaches the devices, in the slots {@link announceVirtio} named. */
export function attachVirtio(vm: Vm, devices: NativeDevices, specs: readonly VirtioSpec[]): void {
  for (const s of specs) {
    call('bootLinux', () => vm.native.attachVirtio(devices, s.kind, s.path, s.readOnly));
  }
}
