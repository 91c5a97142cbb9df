// vcpus in workers: a VM shared through its handle, guest memory shared, kicks from
// another thread, Node's own signals and child processes unaffected, SMP.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { Kvm, VcpuSignalHandle } from '../ts';
import { describeKvm, guest } from './helpers';

const PKG = join(__dirname, '..', 'dist');

/** Runs `body` (CommonJS, with `vcpu`, `workerData`, `parentPort` in scope) in a worker. */
function worker(body: string, workerData: unknown): Worker {
  return new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const vcpu = require(${JSON.stringify(PKG)});
     ${body}`,
    { eval: true, workerData },
  );
}

/** A VM whose guest at 0x1000 spins forever, and a worker that runs it as vcpu 0. */
function spinningWorker(after = ''): { vm: ReturnType<Kvm['createVm']>; w: Worker } {
  const vm = Kvm.open().createVm();
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(0x1000, guest('spin'));
  const w = worker(
    `const vm = vcpu.Vm.fromHandle(workerData.vm);
     const cpu = vm.createVcpu(0);
     cpu.setupLongMode({ rip: 0x1000 });
     parentPort.postMessage('entering');
     const exit = cpu.run();
     ${after}`,
    { vm: vm.handle },
  );
  return { vm, w };
}

const message = <T = any>(w: Worker): Promise<T> =>
  new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });

describeKvm('workers', () => {
  test('two vcpus in two workers count in shared guest memory', async () => {
    const vm = Kvm.open().createVm();
    const ram = vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    ram.bytes.set(guest('smp_counter'), 0x1000);
    const N = 2000;
    const workers = [1, 2].map((id) =>
      worker(
        `const vm = vcpu.Vm.fromHandle(workerData.vm);
         const cpu = vm.createVcpu(workerData.id);
         cpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 - workerData.id * 0x100 });
         cpu.setRegs({ rcx: BigInt(workerData.n) });
         const bytes = vm.memory[0].bytes;            // the same RAM, zero-copy
         bytes[0x6000 + workerData.id] = workerData.id;
         const exit = cpu.run();
         let port = 0;
         if (exit.kind === 'Io') cpu.handleIo((p) => (port = p.address));
         parentPort.postMessage({ kind: exit.kind, port });`,
        { vm: vm.handle, id, n: N },
      ),
    );
    const results = await Promise.all(workers.map((w) => message(w)));
    expect(results).toEqual([
      { kind: 'Io', port: 0x44 },
      { kind: 'Io', port: 0x44 },
    ]);
    expect(new DataView(vm.read(0x5000, 8).buffer).getBigUint64(0, true)).toBe(BigInt(2 * N));
    expect([ram.bytes[0x6001], ram.bytes[0x6002]]).toEqual([1, 2]);
    await Promise.all(workers.map((w) => w.terminate()));
    vm.close();
  });

  test('a signal handle stops a spinning guest in a worker promptly', async () => {
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('spin'));
    const w = worker(
      `const vm = vcpu.Vm.fromHandle(workerData.vm);
       const cpu = vm.createVcpu(0);
       cpu.setupLongMode({ rip: 0x1000 });
       parentPort.postMessage({ handle: cpu.signalHandle() });
       parentPort.once('message', () => {
         parentPort.postMessage('entering');
         const exit = cpu.run();
         parentPort.postMessage({ kind: exit.kind, at: process.hrtime.bigint() });
       });`,
      { vm: vm.handle },
    );
    const { handle } = await message(w);
    w.postMessage('go');
    expect(await message(w)).toBe('entering');
    await new Promise((r) => setTimeout(r, 20)); // the worker is inside KVM_RUN now
    const sent = process.hrtime.bigint();
    expect(VcpuSignalHandle.from(handle).signalImmediateExit()).toBe(true);
    const { kind, at } = await message(w);
    const latencyMs = Number(at - sent) / 1e6;
    expect(kind).toBe('Intr');
    expect(latencyMs).toBeLessThan(100);
    await w.terminate();
    vm.close();
  });

  test("Node's own signals and child processes keep working", () => {
    // In a process of its own: jest's sandbox does not forward signal handlers.
    const script = `
      const { execFileSync } = require('node:child_process');
      const vcpu = require(${JSON.stringify(PKG)});
      const vm = vcpu.Kvm.open().createVm();
      vm.addMemory({ guestAddress: 0, size: 2 << 20 });
      vm.write(0x1000, [0xf4]);
      const cpu = vm.createVcpu(0);
      cpu.setupLongMode({ rip: 0x1000 });
      cpu.signalHandle().signalImmediateExit(); // the kick signal's handler is installed
      const first = cpu.run().kind;
      const alive = setTimeout(() => {}, 10000); // signal listeners do not keep Node alive
      process.once('SIGUSR2', () => {
        clearTimeout(alive);
        const child = execFileSync(process.execPath, ['-e', 'console.log(6 * 7)'], { encoding: 'utf8' }).trim();
        console.log(JSON.stringify({ first, signal: 'SIGUSR2', child, then: cpu.run().kind }));
      });
      process.kill(process.pid, 'SIGUSR2');
    `;
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
    expect(JSON.parse(out)).toEqual({ first: 'Intr', signal: 'SIGUSR2', child: '42', then: 'Hlt' });
  });

  test('closing the VM stops vcpus running in other workers', async () => {
    const { vm, w } = spinningWorker(
      `let after;
       try { cpu.run(); } catch (e) { after = e.code; }
       parentPort.postMessage({ kind: exit.kind, after });`,
    );
    expect(await message(w)).toBe('entering');
    await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    vm.close();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await message(w)).toEqual({ kind: 'Intr', after: 'ECLOSED' });
    await w.terminate();
    expect(() => Kvm.open() && (vm as any).createVcpu(1)).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
  });

  test('process exit with a vcpu running in a worker does not hang', () => {
    const script = `
      const { Worker } = require('node:worker_threads');
      const w = new Worker(\`
        const vcpu = require(${JSON.stringify(PKG)});
        const vm = vcpu.Kvm.open().createVm();
        vm.addMemory({ guestAddress: 0, size: 2 << 20 });
        vm.write(0x1000, [0xeb, 0xfe]);
        const cpu = vm.createVcpu(0);
        cpu.setupLongMode({ rip: 0x1000 });
        require('node:worker_threads').parentPort.postMessage('spinning');
        cpu.run();
      \`, { eval: true });
      w.once('message', () => setTimeout(() => process.exit(7), 50));
    `;
    let status = 0;
    try {
      execFileSync(process.execPath, ['-e', script], { timeout: 10000 });
    } catch (e) {
      status = (e as { status: number }).status;
    }
    expect(status).toBe(7);
  });
});

describeKvm('interrupts and SMP with the in-kernel irqchip', () => {
  test('interrupt() reaches a vcpu halted in userspace (no irqchip)', () => {
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('irq'));
    const cpu = vm.createVcpu(0);
    cpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
    cpu.setRegs({ rbx: 0n });
    expect(cpu.run().kind).toBe('Hlt');
    cpu.interrupt(0x40);
    expect(cpu.run().kind).toBe('Io');
    cpu.handleIo((p) => expect([p.address, p.data[0]]).toEqual([0x600, 0x40]));
    vm.close();
  });

  test('an IPI wakes a halted vcpu', async () => {
    const vm = Kvm.open().createVm({ irqchip: true });
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('irq'));
    vm.write(0x2000, guest('ipi'));
    const bsp = vm.createVcpu(0);
    const ap = vm.createVcpu(1);
    bsp.setupLongMode({ rip: 0x2000, rsp: 0x8000 });
    ap.setupLongMode({ rip: 0x1000, rsp: 0x7000 });
    ap.setRegs({ rbx: 1n }); // enable its local APIC
    expect(ap.getMpState()).toBe(1); // an AP waits for INIT/SIPI...
    ap.setMpState(0); // ...unless made runnable
    const watchdog = setTimeout(() => [bsp, ap].forEach((c) => c.signalHandle().signalImmediateExit()), 10000);
    const apExit = ap.runAsync({}); // halts in the kernel until the IPI arrives
    const bspExit = await bsp.runAsync({});
    expect(bspExit.kind).toBe('Io');
    bsp.handleIo((p) => expect(p.address).toBe(0x601));
    expect((await apExit).kind).toBe('Io');
    ap.handleIo((p) => expect([p.address, p.data[0]]).toEqual([0x600, 0x40]));
    clearTimeout(watchdog);
    vm.close();
  });

  test('a vcpu waiting for SIPI is started by INIT and SIPI from another and runs its real-mode code', async () => {
    const vm = Kvm.open().createVm({ irqchip: true });
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('sipi'));
    const bsp = vm.createVcpu(0);
    const ap = vm.createVcpu(1);
    bsp.setupLongMode({ rip: 0x2000, rsp: 0x8000 });
    expect(ap.getMpState()).toBe(1); // waiting for INIT/SIPI: left so, as a kernel finds it
    const watchdog = setTimeout(() => [bsp, ap].forEach((c) => c.signalHandle().signalImmediateExit()), 10000);
    // KVM_RUN blocks in the kernel until the SIPI, then asks to be run again (EAGAIN):
    // the run goes on, and its first exit is the AP's port write.
    const apExit = ap.runAsync({});
    const bspExit = await bsp.runAsync({});
    expect(bspExit.kind).toBe('Io');
    bsp.handleIo((p) => expect(p.address).toBe(0x601));
    expect((await apExit).kind).toBe('Io');
    ap.handleIo((p) => expect([p.address, p.data[0]]).toEqual([0x600, 0x42]));
    expect(ap.getSregs().cs.base).toBe(0x1000n); // real mode, segment from the SIPI vector
    clearTimeout(watchdog);
    vm.close();
  });
});

describeKvm('worker termination', () => {
  test('terminating a worker whose vcpu spins in the guest does not hang', async () => {
    const { vm, w } = spinningWorker();
    expect(await message(w)).toBe('entering');
    const started = Date.now();
    await w.terminate();
    expect(Date.now() - started).toBeLessThan(5000);
    // The VM is still usable from here.
    const cpu = vm.createVcpu(1);
    vm.write(0x2000, guest('hlt'));
    cpu.setupLongMode({ rip: 0x2000 });
    expect(cpu.run().kind).toBe('Hlt');
    vm.close();
  });
});
