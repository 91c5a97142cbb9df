// The library's side of bench/callgrind.js: EXITS exits of one kind, handled the way
// `mode` says, after a warm-up. Usage: node exits.js MODE EXITS, MODE one of
// run (run() + handleIo), runUntil, hypercall (runUntil with a hypercall handler).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const native = require('../../native');
const { Kvm } = require('../..');

const [mode, exitsArg] = process.argv.slice(2);
const exits = Number(exitsArg);
const WARM_UP = Number(process.env.CALLGRIND_WARM_UP ?? 20000);

const vm = Kvm.open().createVm();
vm.addMemory({ guestAddress: 0, size: 2 << 20 });
const vcpu = vm.createVcpu(0);
if (mode === 'hypercall') {
  vm.write(0x1000, fs.readFileSync(path.join(__dirname, '..', '..', 'guests', 'bench_hypercall.bin')));
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
} else {
  // The same guest as raw.c: real mode at 0x1000, `out 0x10, al; jmp $-2`.
  vm.write(0x1000, new Uint8Array([0xe6, 0x10, 0xeb, 0xfc]));
  vcpu.setSregs({ cs: { ...vcpu.getSregs().cs, base: 0n, selector: 0 } });
  vcpu.setRegs({ rip: 0x1000n, rflags: 2n });
}

let sum = 0;
let n = 0;
const onHypercall = (abi) => {
  abi.setResults([abi.getArgument(0) + 1n]);
  if (++n === limit) vcpu.setImmediateExit(true);
};
// Both modes use this handler: runUntil needs its stop condition, and run() + handleIo
// pays for it too, so the two compare the same work.
const onIoCounted = (p) => {
  sum += p.data[0];
  if (++n === limit) vcpu.setImmediateExit(true);
};
let limit = 0;

function go(count) {
  n = 0;
  limit = count;
  if (mode === 'run') {
    for (let i = 0; i < count; i++) {
      const exit = vcpu.run();
      if (exit.kind !== 'Io') throw new Error(`unexpected ${exit.kind}`);
      vcpu.handleIo(onIoCounted);
    }
    vcpu.setImmediateExit(false);
    return;
  }
  const exit = vcpu.runUntil(mode === 'hypercall' ? { hypercall: onHypercall } : { io: onIoCounted });
  if (exit.kind !== 'Intr' || n !== count) throw new Error(`unexpected ${exit.kind} after ${n}`);
  vcpu.setImmediateExit(false);
}

// Many short calls, so V8 optimizes every function (not only an on-stack loop).
for (let i = 0; i < 40; i++) go(WARM_UP / 40);
// Only what runs between the two toggles is counted (see bench/callgrind.js).
native.benchCallgrindToggle();
go(exits);
native.benchCallgrindToggle();
process.stdout.write(`${sum}\n`);
