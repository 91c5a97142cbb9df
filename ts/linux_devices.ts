/**
 * The virtio devices {@link bootLinux} places on the machine's MMIO bus, in order (the
 * first disk is `/dev/vda`); `loadLinux` announces them (x86: `virtio_mmio.device=` on
 * the command line and `LNRO0005` devices in the ACPI tables' DSDT; arm64: device-tree
 * nodes).
 * @internal
 * @packageDocumentation
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { call, VcpuError } from './errors';
import type { NativeDevices } from './native';
import { objectArg } from './options';
import type { Vm } from './vm';
import { VsockHost } from './vsock';
import { addVirtioDevice, type VirtioDevice, type VirtioDeviceSpec } from './virtio_device';

/** A virtio-blk disk over a raw image file. */
export interface DiskOptions {
  /** The image: its size must be a multiple of 512 bytes. */
  path: string;
  /** The guest may read it only: writes fail with an I/O error (default false). */
  readOnly?: boolean;
}

/** One device to attach. */
interface VirtioSpec {
  kind: 'block' | 'rng' | 'console' | 'vsock' | 'net' | 'js';
  path?: string;
  readOnly?: boolean;
  cid?: number;
  mac?: string;
  device?: VirtioDeviceSpec;
}

/** A virtio-net interface over a tap device. */
export interface NetOptions {
  /** The tap interface (created if missing, which needs CAP_NET_ADMIN). */
  tap: string;
  /** The guest's MAC address (default `02:00:00:00:00:0N` for the Nth interface). */
  mac?: string;
}

/** The devices the options ask for, checked; ENOTSUP for the ones not built yet. */
export function virtioSpecs(
  op: string,
  o: { disks?: unknown; rng?: unknown; vsock?: unknown; net?: unknown; console?: unknown; devices?: unknown },
): VirtioSpec[] {
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
  if (o.net !== undefined) {
    if (!Array.isArray(o.net)) throw new VcpuError('EINVAL', op, `${op}: net must be an array of { tap, mac? }`);
    o.net.forEach((n: unknown, i) => {
      const net = objectArg(op, `net[${i}]`, n);
      for (const key of Object.keys(net)) {
        if (key !== 'tap' && key !== 'mac')
          throw new VcpuError('EINVAL', op, `${op}: unknown option 'net[${i}].${key}' (known: tap, mac)`);
      }
      if (typeof net.tap !== 'string' || net.tap === '')
        throw new VcpuError('EINVAL', op, `${op}: net[${i}].tap must name a tap interface`);
      const mac = net.mac ?? `02:00:00:00:00:${(i + 1).toString(16).padStart(2, '0')}`;
      if (typeof mac !== 'string') throw new VcpuError('EINVAL', op, `${op}: net[${i}].mac must be a string`);
      specs.push({ kind: 'net', path: net.tap, mac });
    });
  }
  if (o.devices !== undefined) {
    if (!Array.isArray(o.devices))
      throw new VcpuError('EINVAL', op, `${op}: devices must be an array of virtio device specs`);
    for (const device of o.devices as VirtioDeviceSpec[]) specs.push({ kind: 'js', device });
  }
  if (o.vsock !== undefined) {
    const v = objectArg(op, 'vsock', o.vsock);
    for (const key of Object.keys(v)) {
      if (key !== 'cid' && key !== 'uds')
        throw new VcpuError('EINVAL', op, `${op}: unknown option 'vsock.${key}' (known: cid, uds)`);
    }
    if (!Number.isInteger(v.cid) || (v.cid as number) < 3)
      throw new VcpuError('EINVAL', op, `${op}: vsock.cid must be an integer of 3 or more`);
    if (v.uds !== undefined && (typeof v.uds !== 'string' || v.uds === ''))
      throw new VcpuError('EINVAL', op, `${op}: vsock.uds must be a path`);
    const uds = (v.uds as string | undefined) ?? join(tmpdir(), `vcpu-vsock-${process.pid}-${++vsockCount}.sock`);
    specs.push({ kind: 'vsock', cid: v.cid as number, path: uds });
  }
  return specs;
}

/**
 * Attaches the devices, in the slots `loadLinux` announced; the vsock device's
 * host side, if any, and the devices written in TypeScript.
 */
export function attachVirtio(
  vm: Vm,
  devices: NativeDevices,
  specs: readonly VirtioSpec[],
): { vsock: VsockHost | undefined; jsDevices: VirtioDevice[] } {
  let vsock: VsockHost | undefined;
  const jsDevices: VirtioDevice[] = [];
  for (const s of specs) {
    if (s.kind === 'js') {
      jsDevices.push(addVirtioDevice(vm, s.device!, devices));
      continue;
    }
    call('bootLinux', () => vm.native.attachVirtio(devices, s.kind, s.path, s.readOnly, s.cid, s.mac));
    if (s.kind === 'vsock') vsock = new VsockHost(s.cid!, s.path!);
  }
  return { vsock, jsDevices };
}

let vsockCount = 0;
