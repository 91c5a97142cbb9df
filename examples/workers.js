// Two vcpus of one VM, each in its own worker thread, counting in shared guest memory
// with `lock inc`; the main thread waits for both and reads the total.
// Run with `node examples/workers.js`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { Kvm, Vm } = require('..');

const COUNT_PER_VCPU = 5000;
const COUNTER = 0x5000; // where guests/smp_counter.asm counts

if (isMainThread) {
  const vm = Kvm.open().createVm();
  const ram = vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  ram.bytes.set(fs.readFileSync(path.join(__dirname, '..', 'guests', 'smp_counter.bin')), 0x1000);

  const cpus = [0, 1].map(
    (id) =>
      new Promise((resolve, reject) => {
        // The VM travels as its handle; the vcpu is created in the thread that runs it.
        const w = new Worker(__filename, { workerData: { vm: vm.handle, id } });
        w.once('message', (m) => resolve(m));
        w.once('error', reject);
      }),
  );
  Promise.all(cpus).then((results) => {
    for (const r of results) console.log(`vcpu ${r.id}: ${r.kind} on port ${r.port.toString(16)}h after ${r.ms} ms`);
    const total = new DataView(ram.bytes.buffer).getBigUint64(COUNTER, true);
    console.log(`counter = ${total} (expected ${2 * COUNT_PER_VCPU})`);
    vm.close();
  });
} else {
  const vm = Vm.fromHandle(workerData.vm);
  const vcpu = vm.createVcpu(workerData.id);
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 - workerData.id * 0x100 });
  vcpu.setRegs({ rcx: BigInt(COUNT_PER_VCPU) });
  const started = Date.now();
  const exit = vcpu.run(); // the guest's `out 0x44` when it is done
  let port = 0;
  if (exit.kind === 'Io') vcpu.handleIo((p) => (port = p.address));
  parentPort.postMessage({ id: workerData.id, kind: exit.kind, port, ms: Date.now() - started });
}
