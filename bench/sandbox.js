// `npm run bench:sandbox`: what a sandbox costs, as ratios to a bare port-I/O exit round
// trip measured beside it in the same run: a warm call, a call with one host call,
// reset after 16 and 1000 written pages, a pool's acquire + call + release, restore
// from a file to the first call's result, an idle pooled sandbox's private memory, and
// sandboxes made per second on one core. Writes bench/results/sandbox.json and
// sandbox.svg. Needs gcc or clang (it builds bench/sandbox_guest.c). About 30 s.
//
// Two bare exits are measured: from ring 0 (the floor of every exit) and from ring 3,
// where a sandbox's guest runs. Where KVM runs guest kernel mode through its emulator
// and user mode natively (a software-nested KVM such as kvm_pvm), an exit from ring 3
// costs several times one from ring 0; on hardware KVM the two are alike.
//
// Environment: SANDBOX_ROUNDS (batches per measure, default 7).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { Kvm, Sandbox } = require('..');
const { buildGuest } = require('../dist/build_guest');
const { barChart } = require('./svg');
const { header, RESULTS, writeReport } = require('./report');

const ROUNDS = Number(process.env.SANDBOX_ROUNDS ?? 7);
const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'vcpu-bench-sandbox-'));
const ELF = path.join(DIR, 'guest.elf');
const SNAP = path.join(DIR, 'ready.snap');

const now = () => process.hrtime.bigint();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The median over ROUNDS batches of `n` runs of `f`, in µs per run (`setup` untimed). */
function perRun(n, f, setup = () => {}) {
  const batches = [];
  for (let r = 0; r < ROUNDS; r++) {
    let total = 0n;
    for (let i = 0; i < n; i++) {
      setup();
      const start = now();
      f();
      total += now() - start;
    }
    batches.push(Number(total) / 1e3 / n);
  }
  return median(batches);
}

/** A bare exit from ring 0: a guest that writes a port in a loop. */
function bareRing0() {
  const vm = Kvm.open().createVm();
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(0x1000, fs.readFileSync(path.join(__dirname, '..', 'guests', 'bench_pio_out.bin')));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
  const us = perRun(500, () => {
    vcpu.run();
    vcpu.handleIo(() => {});
  });
  vm.close();
  return us;
}

/** A bare exit from ring 3: an idle sandbox's guest, which asks for work in a loop. */
function bareRing3(sb) {
  sb.call('nothing');
  return perRun(300, () => {
    sb.vcpu.run();
    sb.vcpu.handleHypercall(() => {});
  });
}

/** Private memory (anonymous and copied-on-write pages) of this process, in KiB. */
function privateKiB() {
  const rollup = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  return Number(/^Private_Dirty:\s+(\d+)/m.exec(rollup)[1]);
}

async function poolCycle(pool, n) {
  const times = [];
  for (let r = 0; r < ROUNDS; r++) {
    let total = 0n;
    for (let i = 0; i < n; i++) {
      await new Promise((resolve) => setImmediate(resolve)); // the pool resets, untimed
      const start = now();
      const sb = pool.acquire();
      sb.call('nothing');
      pool.release(sb);
      total += now() - start;
    }
    times.push(Number(total) / 1e3 / n);
  }
  return median(times);
}

/** How many times `f` completes in one second on this thread. */
function perSecond(f) {
  const end = now() + 1_000_000_000n;
  let n = 0;
  while (now() < end) {
    f();
    n++;
  }
  return n;
}

async function main() {
  buildGuest([path.join(__dirname, 'sandbox_guest.c')], ELF);
  const host = { one: () => 1n };
  const sb = Sandbox.create({ guest: ELF, memory: '16M', host });
  sb.snapshot(SNAP);

  const results = {
    bareExitRing0Us: bareRing0(),
    bareExitRing3Us: bareRing3(sb),
    callUs: perRun(300, () => sb.call('nothing')),
    hostCallUs: perRun(200, () => sb.call('one_host_call')),
    reset16Us: perRun(
      50,
      () => sb.reset(),
      () => sb.call('write_pages', 16n),
    ),
    reset1000Us: perRun(
      10,
      () => sb.reset(),
      () => sb.call('write_pages', 1000n),
    ),
  };
  const pool = Sandbox.pool({ snapshot: SNAP, size: 2, host });
  results.poolCycleUs = await poolCycle(pool, 100);
  pool.close();
  results.restoreToFirstResultUs = perRun(20, () => {
    const r = Sandbox.restore(SNAP, { host });
    r.call('nothing');
    r.close();
  });

  // An idle pooled sandbox's own memory: 32 of them, each used once and reset.
  global.gc?.();
  const before = privateKiB();
  const idle = Sandbox.pool({ snapshot: SNAP, size: 32, host });
  const lent = Array.from({ length: 32 }, () => idle.acquire());
  for (const s of lent) {
    s.call('write_pages', 16n);
    idle.release(s);
  }
  await new Promise((resolve) => setImmediate(resolve));
  global.gc?.();
  results.idlePooledPrivateKiB = Math.max(0, (privateKiB() - before) / 32);
  idle.close();

  results.createsPerSecond = perSecond(() => Sandbox.create({ guest: ELF, memory: '16M', host }).close());
  results.restoresPerSecond = perSecond(() => Sandbox.restore(SNAP, { host }).close());
  sb.close();

  const ratio = (us) => ({ toRing3Exit: us / results.bareExitRing3Us, toRing0Exit: us / results.bareExitRing0Us });
  const ratios = {
    call: ratio(results.callUs),
    hostCall: ratio(results.hostCallUs),
    reset16: ratio(results.reset16Us),
    reset1000: ratio(results.reset1000Us),
    poolCycle: ratio(results.poolCycleUs),
  };
  const out = RESULTS;
  const report = {
    ...header(),
    rounds: ROUNDS,
    results,
    ratios,
    targets: {
      call: 3,
      hostCall: 5,
      reset16: 10,
      poolCycle: 5,
      restoreToFirstResultUs: 1000,
      idlePooledPrivateKiB: 1024,
    },
  };
  writeReport('sandbox', report);
  const rows = [
    ['warm call', 'call', 3],
    ['one host call', 'hostCall', 5],
    ['reset, 16 pages', 'reset16', 10],
    ['pool cycle', 'poolCycle', 5],
    ['reset, 1000 pages', 'reset1000', 0],
  ];
  barChart(path.join(out, 'sandbox.svg'), {
    title: 'Sandbox costs as multiples of one bare exit (same run)',
    series: [
      { label: 'vs an exit from ring 3', color: '#3b7dd8' },
      { label: 'vs an exit from ring 0', color: '#d8833b' },
      { label: 'target (ring 0)', color: '#999999' },
    ],
    groups: rows.map(([label, key, target]) => ({
      labels: [label],
      values: [ratios[key].toRing3Exit, ratios[key].toRing0Exit, target],
    })),
    format: (v) => v.toFixed(1),
  });
  console.log(JSON.stringify(report, null, 2));
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => fs.rmSync(DIR, { recursive: true, force: true }));
