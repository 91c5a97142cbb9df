// `npm run bench:snapshot`: snapshot time and file size, a diff with 100 dirty pages, and
// restore to the guest's first exit, for 64 MiB to 2 GiB guests with every page touched
// and with memory mostly zero. Writes bench/results/snapshot.json and snapshot.svg.
//
// Environment: SNAPSHOT_SIZES (MiB, comma-separated; default 64,256,512,2048),
// SNAPSHOT_ROUNDS (default 5), SNAPSHOT_DIR (default the OS temp directory).
// Takes about a minute and needs twice the largest size in free memory and disk.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { Kvm } = require('..');
const { barChart } = require('./svg');
const { header, RESULTS, writeReport } = require('./report');

const SIZES = (process.env.SNAPSHOT_SIZES ?? '64,256,512,2048').split(',').map(Number);
const ROUNDS = Number(process.env.SNAPSHOT_ROUNDS ?? 5);
const DIR = fs.mkdtempSync(path.join(process.env.SNAPSHOT_DIR ?? os.tmpdir(), 'vcpu-bench-'));
const COUNTER = fs.readFileSync(path.join(__dirname, '..', 'guests', 'counter.bin'));
const MiB = 1 << 20;

const ms = (start) => Number(process.hrtime.bigint() - start) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const diskBytes = (file) => fs.statSync(file).blocks * 512;

/** A VM of `mib` MiB running the counting guest, at its first exit and handled. */
function machine(mib, touched) {
  const vm = Kvm.open().createVm();
  vm.addMemory({ guestAddress: 0, size: mib * MiB });
  if (touched) {
    // Every page non-zero, written with vm.write (a zero-copy view would make every
    // later diff hold the whole region).
    const chunk = Buffer.alloc(MiB, 0x5a);
    for (let at = 0; at < mib * MiB; at += MiB) vm.write(at, chunk);
  }
  vm.write(0x1000, COUNTER);
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
  step(vcpu);
  return { vm, vcpu };
}

function step(vcpu) {
  const exit = vcpu.run();
  if (exit.kind !== 'Io') throw new Error(`unexpected exit ${exit.kind}`);
  vcpu.handleIo(() => {});
}

function measure(mib, touched) {
  const file = path.join(DIR, `${mib}-${touched ? 'touched' : 'zero'}.snap`);
  const { vm, vcpu } = machine(mib, touched);
  // Each round writes a new file (replacing one would time the file system freeing the
  // old one's blocks too).
  const full = [];
  let info;
  for (let r = 0; r < ROUNDS; r++) {
    fs.rmSync(file, { force: true });
    const start = process.hrtime.bigint();
    info = vm.snapshot(file);
    full.push(ms(start));
  }
  // 100 dirty pages: the guest's counter page and 99 the host writes, then a diff.
  const diffs = [];
  let diffInfo;
  const page = Buffer.alloc(4096, 0x33);
  for (let r = 0; r < ROUNDS; r++) {
    vm.snapshot(file);
    step(vcpu);
    for (let p = 0; p < 99; p++) vm.write(0x100000 + p * 4096 * 3, page);
    fs.rmSync(`${file}.diff`, { force: true });
    const start = process.hrtime.bigint();
    diffInfo = vm.snapshot(`${file}.diff`, { diff: true });
    diffs.push(ms(start));
  }
  vm.snapshot(file);
  vm.close();

  // Restore to the guest's first exit. The first restore of a file in a process reads
  // it once to check every memory checksum; later ones (and files this process wrote)
  // skip that.
  const kvm = Kvm.open();
  const restores = [];
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    const back = kvm.restoreVm(file);
    step(back.createVcpu(0));
    restores.push(ms(start));
    back.close();
  }
  const child = require('node:child_process').execFileSync(
    process.execPath,
    [
      '-e',
      `const { Kvm } = require(${JSON.stringify(path.join(__dirname, '..'))});
       const kvm = Kvm.open();
       const t = process.hrtime.bigint();
       const vm = kvm.restoreVm(${JSON.stringify(file)});
       vm.createVcpu(0).run();
       process.stdout.write(String(Number(process.hrtime.bigint() - t) / 1e6));`,
    ],
    { encoding: 'utf8' },
  );
  const result = {
    sizeMiB: mib,
    touched,
    snapshotMs: median(full),
    fileBytes: fs.statSync(file).size,
    diskBytes: diskBytes(file),
    writtenBytes: info.bytes,
    pages: info.pages,
    diffMs: median(diffs),
    diffPages: diffInfo.pages,
    diffBytes: diffInfo.bytes,
    restoreToFirstExitMs: median(restores),
    firstRestoreInNewProcessMs: Number(child),
  };
  for (const f of [file, `${file}.diff`]) fs.rmSync(f, { force: true });
  return result;
}

/** The chart: per size, the snapshot, diff and restore times. */
function writeSvg(file, rows) {
  const series = [
    ['snapshotMs', 'full snapshot', '#3b7dd8'],
    ['diffMs', 'diff, 100 pages', '#2a9d5c'],
    ['restoreToFirstExitMs', 'restore to first exit', '#d8833b'],
  ];
  barChart(file, {
    title: `Snapshot and restore, milliseconds (median of ${ROUNDS})`,
    series: series.map(([, label, color]) => ({ label, color })),
    groups: rows.map((r) => ({
      labels: [`${r.sizeMiB} MiB`, r.touched ? 'all touched' : 'mostly zero'],
      values: series.map(([key]) => r[key]),
    })),
    format: (v) => v.toFixed(1),
    max: 1,
  });
}

const rows = [];
try {
  for (const mib of SIZES) {
    for (const touched of [true, false]) {
      const row = measure(mib, touched);
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
} finally {
  fs.rmSync(DIR, { recursive: true, force: true });
}
const out = RESULTS;
writeReport('snapshot', { ...header(), rounds: ROUNDS, rows });
writeSvg(path.join(out, 'snapshot.svg'), rows);
console.log(`wrote ${path.join(out, 'snapshot.json')} and snapshot.svg`);
