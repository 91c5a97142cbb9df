// Userspace instructions per exit, counted by callgrind on the main thread only
// (`--separate-threads=yes`): this host's wall clock cannot resolve the ~100 ns the
// library adds to an exit, instruction counts can. Only the measured section is
// counted (`measured` in raw.c, by `--toggle-collect`; in exits.js, what runs between
// two `benchCallgrindToggle()` client requests), after a warm-up that lets V8 optimize. For each case, the count for HIGH
// exits minus the count for LOW exits, divided by HIGH - LOW; the least of ROUNDS runs. Cases: a raw KVM_RUN loop in C (no library),
// run() + handleIo, runUntil, and runUntil with a port hypercall.
//
// `npm run bench` runs it (CALLGRIND=0 skips) and keeps the figures in latest.json; run
// alone (`node bench/callgrind.js`) it prints them and updates latest.json's. Needs valgrind and gcc (Debian
// packages); about 5 minutes here. CALLGRIND_CASES=raw,runUntil picks cases.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const LOW = Number(process.env.CALLGRIND_LOW ?? 2000);
const HIGH = Number(process.env.CALLGRIND_HIGH ?? 6000);
const ROUNDS = Number(process.env.CALLGRIND_ROUNDS ?? 3);
const here = __dirname;
/** Counts every case; returns { method, instructionsPerExit, addedOverRaw }. */
function measureInstructions() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vcpu-callgrind-'));

  const raw = path.join(tmp, 'raw');
  execFileSync('gcc', ['-O2', '-o', raw, path.join(here, 'callgrind', 'raw.c')]);
  const exitsJs = path.join(here, 'callgrind', 'exits.js');
  // Under valgrind V8's background compiler threads barely run: optimize on the main
  // thread instead, during the warm-up, so the counted section runs optimized code.
  const NODE_FLAGS = ['--no-concurrent-recompilation'];

  const CASES = {
    raw: (n) => [raw, String(n)],
    'run() + handleIo': (n) => [process.execPath, ...NODE_FLAGS, exitsJs, 'run', String(n)],
    runUntil: (n) => [process.execPath, ...NODE_FLAGS, exitsJs, 'runUntil', String(n)],
    'port hypercall (runUntil)': (n) => [process.execPath, ...NODE_FLAGS, exitsJs, 'hypercall', String(n)],
  };

  /** Instructions the main thread ran for `argv`. */
  function mainThreadInstructions(argv) {
    const out = path.join(tmp, `cg.${process.hrtime.bigint()}`);
    const r = spawnSync(
      'valgrind',
      [
        '--tool=callgrind',
        '--separate-threads=yes',
        '--collect-atstart=no',
        '--toggle-collect=measured',
        `--callgrind-out-file=${out}.%p`,
        ...argv,
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`${argv.join(' ')} failed under valgrind:\n${r.stderr}`);
    const files = fs.readdirSync(tmp).filter((f) => f.startsWith(path.basename(out)));
    // The main thread's file ends in -01 (with threads) or has no suffix (without).
    const main = files.find((f) => f.endsWith('-01')) ?? files[0];
    const summary = /^summary:\s*(\d+)/m.exec(fs.readFileSync(path.join(tmp, main), 'utf8'));
    for (const f of files) fs.rmSync(path.join(tmp, f));
    return Number(summary[1]);
  }

  const results = {};
  const only = process.env.CALLGRIND_CASES?.split(',');
  for (const [name, argv] of Object.entries(CASES)) {
    if (only && !only.includes(name)) continue;
    const perExit = [];
    for (let i = 0; i < ROUNDS; i++) {
      const low = mainThreadInstructions(argv(LOW));
      const high = mainThreadInstructions(argv(HIGH));
      perExit.push((high - low) / (HIGH - LOW));
    }
    results[name] = Math.round(Math.min(...perExit));
    console.log('instructions', `${name}: ${results[name]} per exit (runs: ${perExit.map(Math.round).join(', ')})`);
  }
  const floor = results.raw;
  const report = {
    method: `callgrind, main thread, (I(${HIGH}) - I(${LOW})) / ${HIGH - LOW} exits, least of ${ROUNDS}`,
    instructionsPerExit: results,
    addedOverRaw: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v - floor])),
  };
  fs.rmSync(tmp, { recursive: true, force: true });
  return report;
}

module.exports = { measureInstructions };

// Run alone, it also updates the `instructions` of bench/results/latest.json.
if (require.main === module) {
  const report = measureInstructions();
  console.log(JSON.stringify(report, null, 2));
  const latest = path.join(here, 'results', 'latest.json');
  if (!process.env.CALLGRIND_CASES && fs.existsSync(latest)) {
    const results = JSON.parse(fs.readFileSync(latest, 'utf8'));
    results.instructions = report;
    fs.writeFileSync(latest, `${JSON.stringify(results, null, 2)}\n`);
  }
}
