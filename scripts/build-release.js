// `npm run build:release [-- aarch64]`: a binary as the release publishes it, linked
// against glibc 2.28 (Debian 10, Ubuntu 20.04, RHEL 8 and newer) with cargo-zigbuild
// (which cross-compiles arm64 too), then checked: no symbol may need a newer glibc.
// Writes target/release-glibc-2.28/vcpu.linux-x64-gnu.node (the install test installs
// it) or vcpu.linux-arm64-gnu.node. Needs `zig` (PyPI's ziglang) and cargo-zigbuild
// (crates.io), and installs them when they are missing.
// `npm run build` stays native (this machine's glibc) for development.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const GLIBC = '2.28';
const PLATFORMS = {
  x86_64: { target: 'x86_64-unknown-linux-gnu', platform: 'linux-x64-gnu', objdump: 'objdump' },
  aarch64: { target: 'aarch64-unknown-linux-gnu', platform: 'linux-arm64-gnu', objdump: 'aarch64-linux-gnu-objdump' },
};
const arch = process.argv.slice(2).find((a) => a !== '--') ?? 'x86_64';
if (!PLATFORMS[arch]) {
  console.error(`build:release: unknown architecture '${arch}' (x86_64 or aarch64)`);
  process.exit(2);
}
const { target: TARGET, platform, objdump } = PLATFORMS[arch];
const root = path.join(__dirname, '..');
const outDir = path.join(root, 'target', `release-glibc-${GLIBC}`);
const output = path.join(outDir, `vcpu.${platform}.node`);

/** Whether `cmd` runs. */
function has(cmd, args = ['--version']) {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

if (!has('zig', ['version']) && !has('python3', ['-m', 'ziglang', 'version'])) {
  execFileSync('pip', ['install', '-q', 'ziglang'], { stdio: 'inherit' });
}
if (!has('cargo-zigbuild'))
  execFileSync('cargo', ['install', '-q', '--locked', 'cargo-zigbuild'], { stdio: 'inherit' });
execFileSync('rustup', ['target', 'add', TARGET], { stdio: 'ignore' });

/** The newest `GLIBC_x.y` version the shared object at `file` needs. */
function newestGlibc(file) {
  const symbols = execFileSync(has(objdump) ? objdump : 'objdump', ['-T', file], { encoding: 'utf8' });
  const versions = [...symbols.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) =>
    m.slice(1, 4).map((n) => Number(n ?? 0)),
  );
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  return versions.length ? versions[versions.length - 1].join('.').replace(/\.0$/, '') : 'none';
}

function newer(a, b) {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number));
  return x[0] - y[0] || x[1] - y[1];
}

execFileSync(
  'cargo',
  [
    'zigbuild',
    '--release',
    '-p',
    'vcpu-napi',
    '--target',
    `${TARGET}.${GLIBC}`,
    '--target-dir',
    path.join(root, 'target', 'zig'),
  ],
  { cwd: root, stdio: 'inherit' },
);
fs.mkdirSync(outDir, { recursive: true });
fs.copyFileSync(path.join(root, 'target', 'zig', TARGET, 'release', 'libvcpu_napi.so'), output);
const needs = newestGlibc(output);
if (needs !== 'none' && newer(needs, GLIBC) > 0) {
  console.error(`${path.relative(root, output)} needs glibc ${needs}, more than ${GLIBC}`);
  process.exit(1);
}
console.log(`${path.relative(root, output)}: needs glibc ${needs} (at most ${GLIBC})`);
