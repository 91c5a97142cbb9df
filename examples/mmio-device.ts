// A memory-mapped device written in TypeScript: an adder with two input registers and
// a result register at 0xd0000000, driven by guests/mmio_device.asm.
// Run with `npm run example -- mmio-device`.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { Kvm, type IoParams } from 'vcpu';

/** The package's guest programs, wherever it is installed (or this checkout). */
const GUESTS = join(dirname(require.resolve('vcpu/package.json')), 'guests');

/** An adder: write A (+0) and B (+8), read A + B at SUM (+16). 64-bit registers. */
export class AdderDevice {
  static readonly BASE = 0xd000_0000;
  static readonly SIZE = 0x1000;
  #a = 0n;
  #b = 0n;

  /** Whether this device decodes `address`. */
  claims(address: number): boolean {
    return address >= AdderDevice.BASE && address < AdderDevice.BASE + AdderDevice.SIZE;
  }

  /** One guest access, as `handleMmio` delivers it. */
  access(p: IoParams): void {
    const offset = p.address - AdderDevice.BASE;
    const view = new DataView(p.data.buffer, p.data.byteOffset, p.size);
    if (p.operation === 'write') {
      const value = p.size === 8 ? view.getBigUint64(0, true) : BigInt(view.getUint32(0, true));
      if (offset === 0) this.#a = value;
      else if (offset === 8) this.#b = value;
    } else if (offset === 16) {
      const sum = BigInt.asUintN(64, this.#a + this.#b);
      if (p.size === 8) view.setBigUint64(0, sum, true);
      else view.setUint32(0, Number(sum & 0xffffffffn), true);
    }
  }
}

export function main(_argv: readonly string[] = [], log: (line: string) => void = console.log): void {
  const vm = Kvm.open().createVm();
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(0x1000, readFileSync(join(GUESTS, 'mmio_device.bin')));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
  const adder = new AdderDevice();
  const exit = vcpu.runUntil({
    mmio: (p) => {
      if (adder.claims(p.address)) adder.access(p);
      log(`mmio ${p.operation} ${p.size} bytes at ${p.address.toString(16)}h`);
    },
    io: (p) => log(`guest reports ${Buffer.from(p.data).readUInt32LE()} on port ${p.address.toString(16)}h`),
  });
  log(`exit: ${exit.kind}`);
  vm.close();
}

if (require.main === module) main();
