// Load and faults: many VMs running at once across workers, no lost exit, no leak;
// a worker killed mid-run; memory views that outlive their mapping's owner.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';

import { Kvm } from '../ts';
import { describeKvm, guest } from './helpers';

setFlagsFromString('--expose-gc');
const gc: () => void = runInNewContext('gc');
const fds = () => readdirSync('/proc/self/fd').length;
const PKG = join(__dirname, '..', 'dist');

/** A worker that runs `vms` VMs of guests/count_exits in turns for `ms` milliseconds. */
function loadWorker(vms: number, ms: number): Worker {
  return new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const { Kvm } = require(${JSON.stringify(PKG)});
     const code = require('node:fs').readFileSync(${JSON.stringify(join(__dirname, '..', 'guests', 'count_exits.bin'))});
     const kvm = Kvm.open();
     const cpus = [];
     for (let i = 0; i < workerData.vms; i++) {
       const vm = kvm.createVm();
       vm.addMemory({ guestAddress: 0, size: 2 << 20 });
       vm.write(0x1000, code);
       const vcpu = vm.createVcpu(0);
       vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
       cpus.push({ vm, vcpu, handled: 0 });
     }
     parentPort.postMessage('running');
     const until = Date.now() + workerData.ms;
     while (Date.now() < until) {
       for (const c of cpus) {
         // 50 exits per turn: the last handler asks the vcpu to stop before re-entering.
         let n = 0;
         const exit = c.vcpu.runUntil({ io: () => { c.handled++; if (++n === 50) c.vcpu.setImmediateExit(true); } });
         c.vcpu.setImmediateExit(false);
         if (exit.kind !== 'Intr') throw new Error('unexpected ' + exit.kind);
       }
     }
     const counts = cpus.map((c) => [c.handled, Number(new DataView(c.vm.read(0x5000, 8).buffer).getBigUint64(0, true))]);
     for (const c of cpus) c.vm.close();
     parentPort.postMessage(counts);`,
    { eval: true, workerData: { vms, ms } },
  );
}

const next = (w: Worker) =>
  new Promise<any>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });

describeKvm('load', () => {
  test('64 VMs in 8 workers: every exit counted on both sides, nothing leaks', async () => {
    gc();
    const fds0 = fds();
    const workers = Array.from({ length: 8 }, () => loadWorker(8, 1500));
    await Promise.all(workers.map(next)); // all running
    const results: [number, number][][] = await Promise.all(workers.map(next));
    const all = results.flat();
    expect(all).toHaveLength(64);
    for (const [handled, counted] of all) {
      expect(handled).toBeGreaterThan(0);
      expect(counted).toBe(handled);
    }
    await Promise.all(workers.map((w) => w.terminate()));
    gc();
    expect(fds()).toBeLessThanOrEqual(fds0);
  });

  test('a worker killed mid-run leaves the VM and the other vcpus working', async () => {
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('spin'));
    vm.write(0x2000, guest('count_exits'));
    const spinner = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const { Vm } = require(${JSON.stringify(PKG)});
       const cpu = Vm.fromHandle(workerData.vm).createVcpu(1);
       cpu.setupLongMode({ rip: 0x1000, rsp: 0x7000 });
       parentPort.postMessage('spinning');
       cpu.run();`,
      { eval: true, workerData: { vm: vm.handle } },
    );
    expect(await next(spinner)).toBe('spinning');
    await new Promise((r) => setTimeout(r, 50));
    await spinner.terminate();
    const cpu = vm.createVcpu(0);
    cpu.setupLongMode({ rip: 0x2000, rsp: 0x8000 });
    let handled = 0;
    const exit = cpu.runUntil({
      io: () => {
        if (++handled === 100) cpu.setImmediateExit(true);
      },
    });
    expect(exit.kind).toBe('Intr');
    expect(new DataView(vm.read(0x5000, 8).buffer).getBigUint64(0, true)).toBe(100n);
    vm.close();
  });
});

describeKvm('memory views', () => {
  test('a view survives removeMemory, close and GC, in this thread and in a worker', async () => {
    const vm = Kvm.open().createVm();
    const mem = vm.addMemory({ guestAddress: 0, size: 1 << 20 });
    const view = mem.bytes;
    view[5] = 55;
    const w = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const { Vm } = require(${JSON.stringify(PKG)});
       require('node:v8').setFlagsFromString('--expose-gc');
       const collect = require('node:vm').runInNewContext('gc');
       const bytes = Vm.fromHandle(workerData.vm).memory[0].bytes;
       parentPort.postMessage(bytes[5]);
       parentPort.once('message', () => {
         collect();
         bytes[6] = 66; // after the VM is closed: still this worker's own mapping
         parentPort.postMessage(bytes[5] + bytes[6]);
       });`,
      { eval: true, workerData: { vm: vm.handle } },
    );
    expect(await next(w)).toBe(55);
    vm.removeMemory(mem);
    vm.close();
    gc();
    w.postMessage('go');
    expect(await next(w)).toBe(121);
    expect(view[5]).toBe(55);
    view.fill(7); // writable, and nothing else sees it any more
    expect(view[1000]).toBe(7);
    await w.terminate();
  });
});
