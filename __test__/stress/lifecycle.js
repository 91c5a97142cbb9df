// Lifecycle races, run in a process of their own so that a crash fails the test instead
// of taking jest down: `node lifecycle.js close WORKERS ROUNDS`, `terminate ROUNDS` or
// `run-closed ROUNDS`. Prints one JSON line with what every round saw.
'use strict';
const { readdirSync } = require('node:fs');
const { join } = require('node:path');
const { Worker } = require('node:worker_threads');

const PKG = join(__dirname, '..', '..', 'dist');
const vcpu = require(PKG);
const { guest } = require('../boot');

// Where each guest sits in every VM: a vcpu picks its behaviour by its entry point.
const SPIN = 0x1000; // jmp $
const EXITS = 0x2000; // out 0x10 forever: an exit per instruction
const MSR = 0x3000; // rdmsr of an MSR KVM does not know: a data-carrying exit

function machine(options) {
  const vm = vcpu.Kvm.open().createVm(options);
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(SPIN, guest('spin'));
  vm.write(EXITS, guest('bench_pio_out'));
  vm.write(MSR, guest('msr'));
  return vm;
}

/** A worker with a message queue: `next()` is its next message, `exited` its exit. */
function worker(body, workerData) {
  const w = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const vcpu = require(${JSON.stringify(PKG)});
     const busy = (us) => { const end = process.hrtime.bigint() + BigInt(Math.floor(us * 1000)); while (process.hrtime.bigint() < end); };
     ${body}`,
    { eval: true, workerData },
  );
  const queue = [];
  const waiting = [];
  w.on('message', (m) => (waiting.length ? waiting.shift()(m) : queue.push(m)));
  w.on('error', (e) => (waiting.length ? waiting.shift()({ error: String(e) }) : queue.push({ error: String(e) })));
  const exited = new Promise((resolve) => w.once('exit', resolve));
  const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r)));
  return { w, next, exited };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tally = (t, key) => (t[key] = (t[key] ?? 0) + 1);
const fds = () => readdirSync('/proc/self/fd').length;

// Each round: a new VM; each worker makes a vcpu in it and runs it one of four ways
// (spinning, exiting on every instruction, inside a slow handler, runAsync with
// handlers), and the main thread closes the VM at a random moment. A worker ends after
// some rounds (a thread exit after the close was where the heap showed damage).
const CLOSE_BODY = `
  const modes = ['spin', 'exits', 'handler', 'async'];
  parentPort.on('message', async ({ vm: handle, id, mode }) => {
    let result;
    try {
      const vm = vcpu.Vm.fromHandle(handle);
      const cpu = vm.createVcpu(id);
      cpu.setupLongMode({ rip: mode === 'spin' ? ${SPIN} : ${EXITS}, rsp: 0x8000 - id * 0x100 });
      parentPort.postMessage('running');
      if (mode === 'async') result = (await cpu.runAsync({ io: () => busy(Math.random() * 50) })).kind;
      else if (mode === 'handler') result = cpu.runUntil({ io: () => busy(Math.random() * 200) }).kind;
      else for (;;) { const e = cpu.run(); if (e.kind !== 'Io') { result = e.kind; break; } cpu.handleIo(() => {}); }
    } catch (e) {
      result = e.name + ':' + e.code;
    }
    parentPort.postMessage(result);
  });`;

async function closeRace(workers, rounds) {
  const seen = {};
  const pool = [];
  for (let round = 0; round < rounds; round++) {
    const vm = machine();
    while (pool.length < workers) pool.push(worker(CLOSE_BODY, {}));
    const modes = ['spin', 'exits', 'handler', 'async'];
    pool.forEach((p, id) => p.w.postMessage({ vm: vm.handle, id, mode: modes[(round + id) % 4] }));
    for (const p of pool) {
      const m = await p.next();
      if (m !== 'running') tally(seen, `early:${JSON.stringify(m)}`);
    }
    await sleep(Math.random() * 4);
    vm.close();
    for (const p of pool) tally(seen, await p.next());
    // Some workers end now, while their closed vcpus' last references go.
    for (let i = pool.length - 1; i >= 0; i--) {
      if (Math.random() < 0.25) {
        const [p] = pool.splice(i, 1);
        await p.w.terminate();
      }
    }
  }
  await Promise.all(pool.map((p) => p.w.terminate()));
  return seen;
}

// Each round: a worker runs a vcpu with runAsync, its handler called on every exit, and
// the main thread terminates the worker at a random moment. Afterwards the fds the
// vcpus and VMs held are back to where they were.
async function terminateRace(rounds) {
  const seen = {};
  // Measured after the first round: the first worker opens what Node keeps for workers.
  let before;
  for (let round = 0; round < rounds; round++) {
    if (round === 1) before = fds();
    const p = worker(
      `const vm = vcpu.Kvm.open().createVm();
       vm.addMemory({ guestAddress: 0, size: 2 << 20 });
       vm.write(0x1000, require('node:fs').readFileSync(${JSON.stringify(join(__dirname, '..', '..', 'guests', 'bench_pio_out.bin'))}));
       const cpu = vm.createVcpu(0);
       cpu.setupLongMode({ rip: 0x1000 });
       let n = 0;
       cpu.runAsync({ io: () => { if (++n === 10) parentPort.postMessage('handling'); busy(Math.random() * 30); } });`,
      {},
    );
    tally(seen, await p.next());
    await sleep(Math.random() * 20);
    await p.w.terminate();
    tally(seen, `exit:${await p.exited}`);
  }
  // The vcpu threads of terminated workers end within a kick's time.
  let after = fds();
  for (let i = 0; i < 50 && after > before; i++) {
    await sleep(20);
    after = fds();
  }
  const open = readdirSync('/proc/self/fd').map((fd) => {
    try {
      return require('node:fs').readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return '?';
    }
  });
  return { seen, fdsBefore: before, fdsAfter: after, open };
}

// Each round: an exit that carries data (MsrAccess) on its way back from runAsync, and
// from a synchronous run() in a worker, while the main thread closes the VM.
async function runClosed(rounds) {
  const seen = {};
  const describe = (x) => (x instanceof Error ? `${x.name}:${x.code}` : x.kind);
  const p = worker(
    `parentPort.on('message', (handle) => {
       let result;
       try {
         const cpu = vcpu.Vm.fromHandle(handle).createVcpu(1);
         cpu.setupLongMode({ rip: ${MSR} });
         parentPort.postMessage('running');
         busy(Math.random() * 300);
         result = cpu.run().kind;
       } catch (e) {
         result = e.name + ':' + e.code;
       }
       parentPort.postMessage(result);
     });`,
    {},
  );
  for (let round = 0; round < rounds; round++) {
    const vm = machine({ userspaceMsr: true });
    const cpu = vm.createVcpu(0);
    cpu.setupLongMode({ rip: MSR });
    const settled = cpu.runAsync({}).then(describe, describe);
    p.w.postMessage(vm.handle);
    await p.next();
    await sleep(Math.random() * 0.5);
    vm.close();
    tally(seen, `async:${await settled}`);
    tally(seen, `sync:${await p.next()}`);
  }
  await p.w.terminate();
  return seen;
}

const [what, a, b] = process.argv.slice(2);
const job = what === 'close' ? closeRace(+a, +b) : what === 'terminate' ? terminateRace(+a) : runClosed(+a);
job.then(
  (result) => {
    console.log(JSON.stringify(result));
    process.exit(0);
  },
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
