// `npm run fuzz`: 100 000 random guest programs (50 000 in real mode, 50 000 in long
// mode), seeded and reproducible (VCPU_FUZZ_SEED), bounded by count (VCPU_FUZZ_RUNS per
// mode) and by time (VCPU_FUZZ_SECONDS per mode). Each must end in a decoded exit or a
// clean error; the counts of each exit kind and error are printed per mode. `npm test`
// runs the same suite with 150 programs per mode.
'use strict';
const { spawnSync } = require('node:child_process');

const env = {
  ...process.env,
  VCPU_FUZZ_RUNS: process.env.VCPU_FUZZ_RUNS ?? '50000',
  VCPU_FUZZ_SECONDS: process.env.VCPU_FUZZ_SECONDS ?? '1200',
};
const r = spawnSync(
  'cargo',
  ['test', '--release', '-p', 'vcpu-kvm', '--test', 'fuzz_guest', '--', '--nocapture', '--test-threads=1'],
  { stdio: 'inherit', env },
);
process.exit(r.status ?? 1);
