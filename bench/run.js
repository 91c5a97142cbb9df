// `npm run bench`: per-exit cost (pure Rust floor vs JS run()+handler vs runUntil),
// start-up time, memory per VM and kick latency, side by side in one process and run.
// Writes bench/results/latest.json and bench/results/ratios.svg.
//
// Environment: BENCH_EXITS (default 200000 per round), BENCH_ROUNDS (default 5),
// BENCH_SCENARIOS (comma-separated subset of the exit scenarios), BENCH_RESULTS (where
// to write, default bench/results; the test suite's smoke run writes elsewhere).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const native = require('../native');
const { Kvm, VcpuSignalHandle } = require('..');
const { measureInstructions } = require('./callgrind');
const { writeSvg } = require('./svg');

const N = Number(process.env.BENCH_EXITS ?? 200000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const GUESTS = path.join(__dirname, '..', 'guests');
const SCENARIOS = (process.env.BENCH_SCENARIOS ?? 'pio_out,pio_in,mmio_write,mmio_read,hypercall').split(',');

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
const guestBytes = (scenario) => fs.readFileSync(path.join(GUESTS, `bench_${scenario}.bin`));

/** A VM with the scenario's guest through the facade. */
function facadeVcpu(scenario) {
  const vm = Kvm.open().createVm();
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(0x1000, guestBytes(scenario));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
  return { vm, vcpu };
}

/** The same through the raw binding, for the pure Rust loop. */
function nativeVcpu(scenario) {
  const vm = native.NativeKvm.open().createVm(false, native.defaultHypercallPort(), false);
  vm.addMemory(0, 2 << 20, false, false);
  vm.write(0x1000, guestBytes(scenario));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode();
  vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rsp: 0x8000n });
  return { vm, vcpu };
}

const onIo = (p) => {
  if (p.operation === 'read') p.data[0] = 1;
};
const onHypercall = (abi) => abi.setResults([abi.getArgument(0) + 1n]);

const modes = {
  rust(scenario) {
    const { vm, vcpu } = nativeVcpu(scenario);
    native.benchRustExitLoop(vcpu, 10000);
    return { round: () => native.benchRustExitLoop(vcpu, N), close: () => vm.close() };
  },
  run(scenario) {
    const { vm, vcpu } = facadeVcpu(scenario);
    const loop = (n) => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const exit = vcpu.run();
        if (exit.kind === 'Io') vcpu.handleIo(onIo);
        else if (exit.kind === 'Mmio') vcpu.handleMmio(onIo);
        else if (exit.kind === 'Hypercall') vcpu.handleHypercall(onHypercall);
        else throw new Error(`unexpected exit ${exit.kind}`);
      }
      return Number(process.hrtime.bigint() - start);
    };
    loop(10000);
    return { round: () => loop(N), close: () => vm.close() };
  },
  runUntil(scenario) {
    const { vm, vcpu } = facadeVcpu(scenario);
    let count = 0;
    let target = 0;
    // Counts exits; at the target, asks the native loop to stop at the next run.
    const counted = (fn) => (x) => {
      fn(x);
      if (++count === target) vcpu.setImmediateExit(true);
    };
    const handlers = { io: counted(onIo), mmio: counted(onIo), hypercall: counted(onHypercall) };
    const loop = (n) => {
      count = 0;
      target = n;
      const start = process.hrtime.bigint();
      const exit = vcpu.runUntil(handlers);
      const ns = Number(process.hrtime.bigint() - start);
      vcpu.setImmediateExit(false);
      if (exit.kind !== 'Intr' || count !== n) throw new Error(`runUntil stopped at ${exit.kind} after ${count}`);
      return ns;
    };
    loop(10000);
    return { round: () => loop(N), close: () => vm.close() };
  },
};

/** The async runner: each exit crosses from the vcpu thread to the event loop and back. */
function asyncMode(scenario) {
  const { vm, vcpu } = facadeVcpu(scenario);
  let count = 0;
  let target = 0;
  const kick = vcpu.signalHandle();
  const counted = (fn) => (x) => {
    fn(x);
    if (++count === target) kick.signalImmediateExit();
  };
  const handlers = { io: counted(onIo), mmio: counted(onIo), hypercall: counted(onHypercall) };
  const loop = async (n) => {
    count = 0;
    target = n;
    const start = process.hrtime.bigint();
    const exit = await vcpu.runAsync(handlers);
    const ns = Number(process.hrtime.bigint() - start);
    if (exit.kind !== 'Intr' || count < n) throw new Error(`runAsync stopped at ${exit.kind} after ${count}`);
    return ns / count;
  };
  return { loop, close: () => vm.close() };
}

/** ns per exit of the async runner, in fewer exits (each costs a trip through the event loop). */
async function benchAsync() {
  const n = Math.max(1000, Math.floor(N / 20));
  const out = {};
  for (const scenario of SCENARIOS) {
    const { loop, close } = asyncMode(scenario);
    await loop(1000);
    const xs = [];
    for (let r = 0; r < ROUNDS; r++) xs.push(await loop(n));
    close();
    const s = stats(xs);
    out[scenario] = { exits: n, minNs: Math.round(s.min), medianNs: Math.round(s.median) };
  }
  console.log(
    'runAsync   ',
    Object.entries(out)
      .map(([k, v]) => `${k} ${v.medianNs} ns`)
      .join(', '),
  );
  return out;
}

function benchExits() {
  const results = {};
  for (const scenario of SCENARIOS) {
    const rows = {};
    // Rounds interleave the modes, so drift in the machine's speed hits all alike.
    const runners = Object.fromEntries(Object.entries(modes).map(([m, make]) => [m, make(scenario)]));
    const samples = Object.fromEntries(Object.keys(modes).map((m) => [m, []]));
    for (let r = 0; r < ROUNDS; r++) for (const m of Object.keys(modes)) samples[m].push(runners[m].round() / N);
    for (const runner of Object.values(runners)) runner.close();
    const floor = stats(samples.rust);
    for (const [m, xs] of Object.entries(samples)) {
      const s = stats(xs);
      rows[m] = {
        minNs: Math.round(s.min),
        medianNs: Math.round(s.median),
        ratio: +(s.median / floor.median).toFixed(3),
        addedNs: Math.round(s.median - floor.median),
      };
    }
    results[scenario] = rows;
    console.log(
      scenario.padEnd(11),
      Object.entries(rows)
        .map(([m, r]) => `${m} ${r.medianNs} ns (×${r.ratio})`)
        .join('  '),
    );
  }
  return results;
}

function benchStartup(iterations = 50) {
  const js = [];
  for (let i = 0; i < iterations; i++) {
    const start = process.hrtime.bigint();
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, [0xf4]);
    const vcpu = vm.createVcpu(0);
    vcpu.setupLongMode({ rip: 0x1000 });
    const exit = vcpu.run();
    js.push(Number(process.hrtime.bigint() - start));
    if (exit.kind !== 'Hlt') throw new Error(`startup: ${exit.kind}`);
    vm.close();
  }
  const rust = native.benchRustStartup(iterations);
  const r = stats(rust);
  const j = stats(js);
  const out = {
    rust: { minUs: +(r.min / 1e3).toFixed(1), medianUs: +(r.median / 1e3).toFixed(1) },
    js: { minUs: +(j.min / 1e3).toFixed(1), medianUs: +(j.median / 1e3).toFixed(1) },
    ratio: +(j.median / r.median).toFixed(3),
  };
  console.log('startup    ', `rust ${out.rust.medianUs} µs, js ${out.js.medianUs} µs (×${out.ratio})`);
  return out;
}

function meminfoKiB() {
  const m = Object.fromEntries(
    fs
      .readFileSync('/proc/meminfo', 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [k, v] = l.split(':');
        return [k, parseInt(v, 10)];
      }),
  );
  return m.Slab + m.KernelStack + m.PageTables + (m.SecPageTables ?? 0);
}

function benchMemory(count = 100) {
  global.gc?.();
  const fds0 = fs.readdirSync('/proc/self/fd').length;
  const rss0 = process.memoryUsage().rss;
  const kernel0 = meminfoKiB();
  const vms = [];
  for (let i = 0; i < count; i++) {
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.createVcpu(0);
    vms.push(vm);
  }
  global.gc?.();
  const out = {
    vms: count,
    rssKiBPerVm: Math.round((process.memoryUsage().rss - rss0) / 1024 / count),
    fdsPerVm: +((fs.readdirSync('/proc/self/fd').length - fds0) / count).toFixed(2),
    kernelKiBPerVm: Math.round((meminfoKiB() - kernel0) / count),
  };
  for (const vm of vms) vm.close();
  console.log(
    'memory     ',
    `${out.rssKiBPerVm} KiB RSS, ${out.kernelKiBPerVm} KiB kernel, ${out.fdsPerVm} fds per idle VM`,
  );
  return out;
}

/** A worker spins a guest; the main thread kicks it; the worker reports when run() returned. */
async function benchKick(times = 20) {
  const worker = new Worker(
    `
    const { parentPort } = require('node:worker_threads');
    const { Kvm } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, [0xeb, 0xfe]); // jmp $
    const vcpu = vm.createVcpu(0);
    vcpu.setupLongMode({ rip: 0x1000 });
    parentPort.on('message', (m) => {
      if (m === 'close') { vm.close(); parentPort.close(); return; }
      parentPort.postMessage({ running: true });
      const exit = vcpu.run();
      parentPort.postMessage({ stopped: process.hrtime.bigint(), kind: exit.kind });
    });
    parentPort.postMessage({ handle: vcpu.signalHandle() });
    `,
    { eval: true },
  );
  const next = () => new Promise((resolve) => worker.once('message', resolve));
  const { handle } = await next();
  const kick = VcpuSignalHandle.from(handle);
  const latencies = [];
  for (let i = 0; i < times; i++) {
    worker.postMessage('go');
    await next(); // running (the worker is about to enter the guest)
    await new Promise((r) => setTimeout(r, 5));
    const t0 = process.hrtime.bigint();
    kick.signalImmediateExit();
    const { stopped, kind } = await next();
    if (kind !== 'Intr') throw new Error(`kick: ${kind}`);
    latencies.push(Number(stopped - t0));
  }
  worker.postMessage('close');
  await new Promise((r) => worker.once('exit', r));
  const s = stats(latencies);
  const out = { minUs: +(s.min / 1e3).toFixed(1), medianUs: +(s.median / 1e3).toFixed(1) };
  console.log('kick       ', `${out.medianUs} µs median from signalImmediateExit() to run() returning in the worker`);
  return out;
}

/** The test kernel of guests/ through bootLinux: to its first console byte and to power-off. */
async function benchLinux(times = 20) {
  const { bootLinux } = require('..');
  const kernel = path.join(GUESTS, 'test_kernel.bzImage');
  const first = [];
  const total = [];
  for (let i = 0; i < times; i++) {
    const start = process.hrtime.bigint();
    const linux = bootLinux({ kernel, memory: '64M' });
    let firstAt;
    linux.output.once('data', () => (firstAt = process.hrtime.bigint()));
    const exit = await linux.start();
    const end = process.hrtime.bigint();
    if (exit.kind !== 'SystemEventReset') throw new Error(`linux: ${exit.kind}`);
    linux.close();
    first.push(Number((firstAt ?? end) - start));
    total.push(Number(end - start));
  }
  const f = stats(first);
  const t = stats(total);
  const out = {
    firstSerialByteMs: { min: +(f.min / 1e6).toFixed(2), median: +(f.median / 1e6).toFixed(2) },
    powerOffMs: { min: +(t.min / 1e6).toFixed(2), median: +(t.median / 1e6).toFixed(2) },
  };
  console.log(
    'linux      ',
    `test kernel: first serial byte ${out.firstSerialByteMs.median} ms, power-off ${out.powerOffMs.median} ms (median; the console is polled every 10 ms)`,
  );
  return out;
}

function targets(r) {
  const t = {};
  for (const [scenario, rows] of Object.entries(r.exits)) {
    t[`${scenario}.run`] = rows.run.ratio <= 1.1 && rows.run.addedNs <= 300;
    t[`${scenario}.runUntil`] = rows.runUntil.ratio <= 1.05 && rows.runUntil.addedNs <= 150;
  }
  t.startup = r.startup.ratio <= 1.2 && r.startup.js.medianUs < 1000;
  t.memory = r.memory.rssKiBPerVm + r.memory.kernelKiBPerVm <= 1024;
  t.kick = r.kick.medianUs <= 1000;
  if (r.instructions) {
    const added = r.instructions.addedOverRaw;
    const per = r.instructions.instructionsPerExit;
    t['instructions.run'] = added['run() + handleIo'] <= 500;
    t['instructions.runUntil'] = added.runUntil <= 500 && per.runUntil <= per['run() + handleIo'];
  }
  return t;
}

async function main() {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  console.log(`vcpu bench: ${N} exits × ${ROUNDS} rounds, ${cpu}, ${os.release()}`);
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpu,
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(),
      node: process.version,
    },
    config: { exitsPerRound: N, rounds: ROUNDS },
    exits: benchExits(),
    async: await benchAsync(),
    startup: benchStartup(),
    memory: benchMemory(),
    kick: await benchKick(),
    linux: await benchLinux(),
    // Userspace instructions per exit (callgrind), which the wall clock cannot resolve.
    instructions: process.env.CALLGRIND === '0' ? undefined : measureInstructions(),
  };
  result.targets = targets(result);
  const dir = process.env.BENCH_RESULTS ?? path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify(result, null, 2) + '\n');
  writeSvg(path.join(dir, 'ratios.svg'), result);
  console.log(
    'targets    ',
    Object.entries(result.targets)
      .map(([k, ok]) => `${k} ${ok ? 'met' : 'MISSED'}`)
      .join(', '),
  );
  console.log(`wrote ${path.relative(process.cwd(), dir)}/latest.json and ratios.svg`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
