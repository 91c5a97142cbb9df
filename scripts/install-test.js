// The package as a new user gets it: packs `vcpu` (with its optionalDependencies, as
// `napi prepublish` would add them) and its linux-x64-gnu binary package, installs both
// from the tarballs into an empty project with no Rust toolchain on PATH, and runs a
// guest from CommonJS and from TypeScript compiled to ESM. Part of `npm test`.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const TARGET = 'linux-x64-gnu';
/** napi-rs' platform name of each Rust target (the npm/<platform>/ folders). */
const PLATFORMS = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
};
const binary = `vcpu.${TARGET}.node`;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vcpu-install-'));
// PATH without cargo/rustc: installing must not build anything.
const PATH = process.env.PATH.split(':')
  .filter((dir) => !['cargo', 'rustc'].some((tool) => fs.existsSync(path.join(dir, tool))))
  .join(':');
const env = { ...process.env, PATH, npm_config_audit: 'false', npm_config_fund: 'false' };
const sh = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

function pack(dir) {
  const out = sh('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', tmp], dir).trim().split('\n');
  return path.join(tmp, out[out.length - 1]);
}

try {
  // The binary package, from npm/<target>/ plus the built addon.
  const platformDir = path.join(tmp, 'platform');
  fs.mkdirSync(platformDir);
  fs.copyFileSync(path.join(root, 'npm', TARGET, 'package.json'), path.join(platformDir, 'package.json'));
  // The binary the release publishes (npm test passes it), else this machine's build.
  const built = process.env.VCPU_INSTALL_BINARY ?? path.join(root, 'native', binary);
  fs.copyFileSync(built, path.join(platformDir, binary));
  console.log(`install test: ${path.relative(root, built)}`);
  const platformTgz = pack(platformDir);

  // The main package, staged so its package.json can list the binary packages.
  const mainDir = path.join(tmp, 'main');
  const mainTgzRaw = pack(root);
  fs.mkdirSync(mainDir);
  sh('tar', ['xzf', mainTgzRaw, '-C', mainDir, '--strip-components=1'], tmp);
  if (fs.readdirSync(path.join(mainDir, 'native')).some((f) => f.endsWith('.node'))) {
    throw new Error('the main package must not carry a native binary');
  }
  const staged = JSON.parse(fs.readFileSync(path.join(mainDir, 'package.json'), 'utf8'));
  // As the release publishes it: the published targets' packages, and no `prepare`
  // (a clone builds on `npm install`; an installed tarball must run nothing).
  staged.optionalDependencies = Object.fromEntries(pkg.napi.targets.map((t) => [`vcpu-${PLATFORMS[t]}`, pkg.version]));
  delete staged.scripts.prepare;
  fs.writeFileSync(path.join(mainDir, 'package.json'), JSON.stringify(staged, null, 2));
  fs.unlinkSync(mainTgzRaw);
  const mainTgz = pack(mainDir);

  // A new project that installs both.
  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
  const install = require('node:child_process').spawnSync('npm', ['install', mainTgz, platformTgz], {
    cwd: app,
    env,
    encoding: 'utf8',
  });
  if (install.status !== 0) throw new Error(`npm install failed:\n${install.stderr}`);
  const installWarnings = /install-scripts|prepare/.test(install.stderr) ? 'install-scripts warning' : 'quiet';

  const guest = '[0xb0, 0x41, 0xe6, 0x10, 0xf4]'; // mov al, 'A'; out 0x10, al; hlt
  fs.writeFileSync(
    path.join(app, 'main.cjs'),
    `const { Kvm } = require('vcpu');
     const vm = Kvm.open().createVm();
     vm.addMemory({ guestAddress: 0, size: 2 << 20 });
     vm.write(0x1000, ${guest});
     const vcpu = vm.createVcpu(0);
     vcpu.setupLongMode({ rip: 0x1000 });
     let out = '';
     const exit = vcpu.runUntil({ io: (p) => (out += String.fromCharCode(p.data[0])) });
     console.log('cjs', out, exit.kind, require.resolve('vcpu-${TARGET}').includes('node_modules'));
     vm.close();`,
  );
  fs.writeFileSync(
    path.join(app, 'main.mts'),
    `import { Kvm, VcpuError, type VcpuExit } from 'vcpu';
     const vm = Kvm.open().createVm();
     vm.addMemory({ guestAddress: 0, size: 2 << 20 });
     vm.write(0x1000, new Uint8Array(${guest}));
     const vcpu = vm.createVcpu(0);
     vcpu.setupLongMode({ rip: 0x1000 });
     const first: VcpuExit = vcpu.run();
     let out = '';
     if (first.kind === 'Io') vcpu.handleIo((p) => (out += String.fromCharCode(p.data[0])));
     const exit: VcpuExit = vcpu.run();
     console.log('esm', out, exit.kind, VcpuError.name);
     vm.close();`,
  );
  // A plain ES module, no TypeScript: named imports from the package's `import` entry.
  fs.writeFileSync(
    path.join(app, 'plain.mjs'),
    `import { Kvm, VcpuError } from 'vcpu';
     import vcpu from 'vcpu';
     const vm = Kvm.open().createVm();
     vm.addMemory({ guestAddress: 0, size: 2 << 20 });
     vm.write(0x1000, new Uint8Array(${guest}));
     const vcpu0 = vm.createVcpu(0);
     vcpu0.setupLongMode({ rip: 0x1000 });
     let out = '';
     const exit = vcpu0.runUntil({ io: (p) => (out += String.fromCharCode(p.data[0])) });
     console.log('mjs', out, exit.kind, VcpuError.name, vcpu.Kvm === Kvm);
     vm.close();`,
  );
  const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  sh(
    process.execPath,
    [
      tsc,
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--strict',
      '--skipLibCheck',
      'false',
      '--types',
      'node',
      '--typeRoots',
      path.join(root, 'node_modules', '@types'),
      '--outDir',
      'out',
      'main.mts',
    ],
    app,
  );

  const cjs = sh(process.execPath, ['main.cjs'], app).trim();
  const esm = sh(process.execPath, [path.join('out', 'main.mjs')], app).trim();
  const mjs = sh(process.execPath, ['plain.mjs'], app).trim();
  // Where no platform package fits (simulated: it is moved away), loading the package is
  // a VcpuError ENOTSUP naming the platform, not a crash or a missing-module trace.
  const platformPkg = path.join(app, 'node_modules', `vcpu-${TARGET}`);
  fs.renameSync(platformPkg, `${platformPkg}.away`);
  fs.writeFileSync(
    path.join(app, 'missing.cjs'),
    `try { require('vcpu'); console.log('loaded'); }
     catch (e) { console.log(e.name, e.code, e.message.includes(process.platform + '-' + process.arch)); }`,
  );
  const missing = sh(process.execPath, ['missing.cjs'], app).trim();
  fs.renameSync(`${platformPkg}.away`, platformPkg);
  const want = {
    cjs: 'cjs A Hlt true',
    esm: 'esm A Hlt VcpuError',
    mjs: 'mjs A Hlt VcpuError true',
    missing: 'VcpuError ENOTSUP true',
    install: 'quiet',
  };
  const got = { cjs, esm, mjs, missing, install: installWarnings };
  const passed = Object.keys(want).filter((k) => got[k] === want[k]).length;
  const total = Object.keys(want).length;
  console.log(`install test: ${Object.values(got).join(' | ')}`);
  console.log(
    `${passed} passed, ${total - passed} failed${passed === total ? '' : ` (wanted ${JSON.stringify(want)})`}`,
  );
  const ok = passed === total;
  process.exitCode = ok ? 0 : 1;
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
