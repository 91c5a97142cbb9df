// The demo: a 64-bit guest prints a greeting through port I/O and asks the host to add
// up numbers in its memory through a hypercall. Run with `npm start`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Kvm } = require('..');

const SERIAL = 0x3f8; // the greeting, one byte per element of `rep outsb`
const ANSWER = 0x3f9; // the sum, as two 32-bit writes (low, high)
const SUM = 1n; // hypercall id: SUM(pointer, count) over 64-bit numbers

const kvm = Kvm.open();
const vm = kvm.createVm();
vm.addMemory({ guestAddress: 0, size: 2 << 20 });
vm.write(0x1000, fs.readFileSync(path.join(__dirname, '..', 'guests', 'hello.bin')));
const vcpu = vm.createVcpu(0);
vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });

let text = '';
const answer = [];
const exit = vcpu.runUntil({
  io(p) {
    if (p.address === SERIAL) {
      text += String.fromCharCode(p.data[0]);
      if (text.endsWith('\n')) process.stdout.write(`guest: ${text}`);
    } else if (p.address === ANSWER) answer.push(Buffer.from(p.data).readUInt32LE());
  },
  hypercall(abi) {
    if (abi.hypercallId !== SUM) return; // rax stays -1: not supported
    const [pointer, count] = abi.args;
    const bytes = vm.read(Number(pointer), Number(count) * 8);
    const numbers = new BigUint64Array(bytes.buffer, bytes.byteOffset, Number(count));
    const sum = numbers.reduce((a, b) => a + b, 0n);
    console.log(`host: hypercall SUM(${pointer.toString(16)}h, ${count}) over [${numbers.join(', ')}] = ${sum}`);
    abi.setResults([sum]);
  },
});

console.log(`guest: the host's answer came back as ${answer[0] + answer[1] * 2 ** 32}`);
console.log(`vcpu exit: ${exit.kind} at rip ${vcpu.getRegs().rip.toString(16)}h`);
vm.close();
