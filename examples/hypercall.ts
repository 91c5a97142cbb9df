// Host functions the guest calls with buffers in its memory, through the hypercall ABI
// (guests/hypercall_buffers.asm). Run with `npm run example -- hypercall`.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { Kvm, type HypercallAbi } from 'vcpu';

/** The package's guest programs, wherever it is installed (or this checkout). */
const GUESTS = join(dirname(require.resolve('vcpu/package.json')), 'guests');

/** The host's functions, by hypercall id; each gets the call and returns result 0. */
const functions: Record<string, (abi: HypercallAbi, log: (line: string) => void) => bigint> = {
  // UPPER(ptr, len): upper-cases the guest's buffer in place.
  1: (abi) => {
    const text = abi.readString(0, 1);
    abi.writeBuffer(0, Buffer.from(text.toUpperCase()));
    return BigInt(text.length);
  },
  // LOG(ptr, len): prints the guest's buffer.
  2: (abi, log) => {
    log(`guest says: ${abi.readString(0, 1)}`);
    return 0n;
  },
};

export function main(_argv: readonly string[] = [], log: (line: string) => void = console.log): void {
  const vm = Kvm.open().createVm();
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(0x1000, readFileSync(join(GUESTS, 'hypercall_buffers.bin')));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
  const exit = vcpu.runUntil({
    hypercall: (abi) => {
      const fn = functions[abi.hypercallId.toString()];
      if (fn) abi.setResults([fn(abi, log)]); // unknown ids return -1
    },
  });
  log(`exit: ${exit.kind}`);
  vm.close();
}

if (require.main === module) main();
