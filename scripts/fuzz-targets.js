// `npm run fuzz:targets [-- SECONDS]`: runs each fuzz target for SECONDS (default 60):
// snapshot decoding and the hypercall ABI's buffer helpers (bolero, in
// crates/vcpu-kvm/tests/fuzz_targets.rs) and the web console's request routing
// (scripts/fuzz-web-console.js). Each prints the inputs it ran; a finding fails the run
// and prints the input. About 3 × SECONDS in all, plus the build.
'use strict';
const { spawnSync } = require('node:child_process');

const seconds = process.argv[2] ?? '60';
const cargo = spawnSync(
  'cargo',
  ['test', '--release', '-p', 'vcpu-kvm', '--test', 'fuzz_targets', '--', '--nocapture', '--test-threads=1'],
  { stdio: 'inherit', env: { ...process.env, VCPU_FUZZ_TARGET_SECONDS: seconds } },
);
if (cargo.status !== 0) process.exit(cargo.status ?? 1);
const web = spawnSync(process.execPath, [require.resolve('./fuzz-web-console.js'), seconds], { stdio: 'inherit' });
process.exit(web.status ?? 1);
