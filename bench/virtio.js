// `npm run bench:virtio`: virtio-blk as its device thread sees it: 4 KiB random reads
// and 64 KiB sequential reads from a 64 MiB image in the page cache, served in batches
// of 64 requests by the transport (crates/vcpu-kvm/tests/virtio.rs, bench_virtio_blk),
// with the host CPU time per request (CLOCK_THREAD_CPUTIME_ID) against a plain pread of
// the same size and offsets (target: at most 2×). Writes bench/results/virtio.json and
// virtio.svg. Then vsock stream throughput each way through the device's packet path,
// with its CPU per MiB against plain socket writes and reads (vsock.svg). Builds the
// tests in release mode the first time (about a minute), then runs in seconds.
// Environment: VIRTIO_ROUNDS (runs, median taken; default 5).
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const { barChart } = require('./svg');
const { header, RESULTS, writeReport } = require('./report');

const ROUNDS = Number(process.env.VIRTIO_ROUNDS ?? 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The BENCH lines of one cargo test run (`args` after `cargo test --quiet --release -p vcpu-kvm`). */
function benchLines(args) {
  const out = execFileSync(
    'cargo',
    ['test', '--quiet', '--release', '-p', 'vcpu-kvm', ...args, '--', '--ignored', '--nocapture'],
    { cwd: path.join(__dirname, '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return out
    .split('\n')
    .filter((l) => l.startsWith('BENCH '))
    .map((l) => JSON.parse(l.slice(6)));
}

const runs = [];
const vsockRuns = [];
for (let r = 0; r < ROUNDS; r++) {
  runs.push(benchLines(['--test', 'virtio', 'bench_virtio_blk']));
  vsockRuns.push(benchLines(['--lib', 'bench_vsock']));
}
const rows = runs[0].map((first, i) => {
  const pick = (key) => median(runs.map((run) => run[i][key]));
  const device = pick('deviceCpuNsPerRequest');
  const pread = pick('preadCpuNsPerRequest');
  return {
    name: first.name,
    size: first.size,
    requestsPerSec: pick('requestsPerSec'),
    mbPerSec: pick('mbPerSec'),
    deviceCpuNsPerRequest: device,
    preadCpuNsPerRequest: pread,
    ratioToPread: device / pread,
  };
});
const vsock = vsockRuns[0].map((first, i) => {
  const pick = (key) => median(vsockRuns.map((run) => run[i][key]));
  const device = pick('deviceCpuNsPerMib');
  const socket = pick('socketCpuNsPerMib');
  return {
    name: first.name,
    mibPerSec: pick('mibPerSec'),
    deviceCpuNsPerMib: device,
    socketCpuNsPerMib: socket,
    ratioToSocket: device / socket,
  };
});
const report = {
  ...header(),
  rounds: ROUNDS,
  rows,
  vsock,
  target: { ratioToPread: 2 },
  notes: [
    "vsock: the device's packet path (crates/vcpu-kvm/src/vmm/virtio/vsock_bench.rs), 64 KiB packets, 256 MiB each way over a UNIX socket, against plain socket writes and reads of the same sizes; the queue walk is left out (the blk rows have it)",
    "Firecracker is not measured beside these: its release binaries come from GitHub, which this machine cannot reach, and one built from source could only be driven by a guest kernel, which this nested KVM runs in its instruction emulator (about 1.5 M instructions/s), so the figure would be the emulator's",
  ],
};
const out = RESULTS;
writeReport('virtio', report);
barChart(path.join(out, 'virtio.svg'), {
  title: `virtio-blk: host CPU per request, ns (median of ${ROUNDS})`,
  series: [
    { label: 'device (serve + pread into the guest)', color: '#3b7dd8' },
    { label: 'pread alone', color: '#999999' },
  ],
  groups: rows.map((r) => ({
    labels: [r.name, `${(r.requestsPerSec / 1000).toFixed(0)}k req/s, ${r.mbPerSec.toFixed(0)} MB/s`],
    values: [r.deviceCpuNsPerRequest, r.preadCpuNsPerRequest],
  })),
  format: (v) => v.toFixed(0),
});
barChart(path.join(out, 'vsock.svg'), {
  title: `virtio-vsock stream: host CPU per MiB, µs (median of ${ROUNDS})`,
  series: [
    { label: 'device (packets to and from the socket)', color: '#3b7dd8' },
    { label: 'socket write or read alone', color: '#999999' },
  ],
  groups: vsock.map((r) => ({
    labels: [r.name, `${(r.mibPerSec / 1024).toFixed(1)} GiB/s`],
    values: [r.deviceCpuNsPerMib / 1000, r.socketCpuNsPerMib / 1000],
  })),
  format: (v) => v.toFixed(0),
});
console.log(JSON.stringify(report, null, 2));
