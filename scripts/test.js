// `npm test`: the build (addon and dist/), lint (eslint, prettier, rustfmt, clippy, workflows), the Rust tests
// (cargo test) and the TypeScript tests (jest), both of which run real guests on
// /dev/kvm, the release build (glibc 2.28) and the install test of it (packed tarballs
// in a fresh project), and the docs build. Without a usable /dev/kvm this fails with a message
// saying what to do, unless VCPU_SKIP_KVM=1 is set (never honoured when CI=true): then
// only the tests that need no KVM run.
'use strict';
const { spawnSync } = require('node:child_process');
const { kvmStatus } = require('./kvm-status');

const status = kvmStatus();
const skip = !status.ok && process.env.VCPU_SKIP_KVM === '1' && process.env.CI !== 'true';
if (!status.ok && !skip) {
  console.error(
    `\n${status.message}\nTo run only the tests that need no KVM, set VCPU_SKIP_KVM=1 (not honoured under CI=true).\n`,
  );
  process.exit(1);
}
if (skip) console.warn(`VCPU_SKIP_KVM=1: ${status.message} Skipping the tests that need it.`);

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, VCPU_KVM_SKIPPED: skip ? '1' : '' } });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const npmRun = (script) => run('npm', ['run', '--silent', script]);
// Everything a test, a worker or a child process loads (dist/, the addon) is built from
// this tree first, so one run never mixes fresh sources with a stale build.
npmRun('build');
npmRun('lint');
run('cargo', skip ? ['test', '--workspace', '--lib'] : ['test', '--workspace']);
run(process.execPath, [require.resolve('jest/bin/jest'), ...process.argv.slice(2)]);
if (!skip) {
  // The release's binary (glibc 2.28, symbol versions checked), installed and run.
  run(process.execPath, [require.resolve('./build-release')]);
  process.env.VCPU_INSTALL_BINARY = require('node:path').join(
    __dirname,
    '..',
    'target',
    'release-glibc-2.28',
    'vcpu.linux-x64-gnu.node',
  );
  run(process.execPath, [require.resolve('./install-test')]);
}
npmRun('docs');
