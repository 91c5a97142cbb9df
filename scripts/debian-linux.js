// Fetches a real distribution kernel and builds what the opt-in x86-64 Linux suite
// (VCPU_LINUX_BOOT=1, __test__/linux_distro.spec.ts) boots: Debian's linux-image-amd64
// and busybox-static, through apt, into .cache/linux/. The initramfs's /init loads
// Debian's virtio-mmio, virtio-blk, ext4 and vsock modules, reads the ext4 disk made
// here (read-only: a write must be refused), echoes over vsock to the host, prints a
// marker and reboots, which with `reboot=k` goes through the i8042: the VM stops
// cleanly. Every step prints a line the test looks for.
'use strict';
const { execFileSync } = require('node:child_process');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { DISK_TEXT, LOAD_MODULES, busyboxTree, cpio, ext4Disk, guestModules, vsockEcho } = require('./guest-userland');

const CACHE = path.join(__dirname, '..', '.cache', 'linux');
const MARKER = 'VCPU-LINUX-INIT-OK';
/** The host port the guest's vsock_echo connects to. */
const VSOCK_PORT = 5000;
const VSOCK_MESSAGE = 'hello-over-vsock';

function sh(cmd, args, cwd = CACHE) {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

/**
 * The ELF vmlinux inside a bzImage: its xz payload (payload_offset/payload_length in the
 * setup header), decompressed with the host's xz. Booting it skips the decompressor,
 * which on a KVM that emulates guest kernel code takes most of the boot.
 */
function extractVmlinux(bzImagePath, out) {
  const image = fs.readFileSync(bzImagePath);
  const setupSize = ((image[0x1f1] || 4) + 1) * 512;
  const offset = setupSize + image.readUInt32LE(0x248);
  const payload = image.subarray(offset, offset + image.readUInt32LE(0x24c));
  fs.writeFileSync(out, execFileSync('xz', ['-dc', '--single-stream'], { input: payload, maxBuffer: 1 << 30 }));
}

/** Debian's kernel and busybox, unpacked into .cache/linux/root (cached). */
function fetchPackages(root) {
  if (fs.existsSync(path.join(root, 'boot')) && fs.existsSync(path.join(root, 'bin', 'busybox'))) return;
  // The metapackage names the versioned image package.
  const deps = sh('apt-cache', ['depends', 'linux-image-amd64']);
  const image = /Depends: (linux-image-[^\s]+-amd64)/.exec(deps)?.[1];
  if (!image) throw new Error(`no kernel package behind linux-image-amd64 (run apt-get update?):\n${deps}`);
  sh('apt-get', ['download', image, 'busybox-static']);
  for (const deb of fs.readdirSync(CACHE).filter((f) => f.endsWith('.deb'))) sh('dpkg-deb', ['-x', deb, 'root']);
}

/** The guest's /init: each step says how it went on the console. */
const INIT = [
  '#!/bin/sh',
  'mount -t proc proc /proc',
  'mount -t sysfs sys /sys',
  'mount -t devtmpfs dev /dev',
  LOAD_MODULES,
  'mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt',
  'touch /mnt/new || echo "write refused"',
  `vsock_echo ${VSOCK_PORT} ${VSOCK_MESSAGE}`,
  `echo ${MARKER}`,
  'reboot -f',
  '',
].join('\n');

function prepare() {
  fs.mkdirSync(CACHE, { recursive: true });
  const kernelPath = path.join(CACHE, 'vmlinuz');
  const vmlinuxPath = path.join(CACHE, 'vmlinux');
  // Named after /init, so a cached initramfs is rebuilt when the script changes.
  const initHash = createHash('sha256').update(INIT).digest('hex').slice(0, 12);
  const initrdPath = path.join(CACHE, `initramfs-${initHash}.cpio`);
  const diskPath = path.join(CACHE, 'disk.img');
  const result = {
    kernelPath,
    vmlinuxPath,
    initrdPath,
    diskPath,
    marker: MARKER,
    diskText: DISK_TEXT,
    vsock: { port: VSOCK_PORT, message: VSOCK_MESSAGE },
  };
  if ([kernelPath, vmlinuxPath, initrdPath, diskPath].every((p) => fs.existsSync(p))) return result;
  const root = path.join(CACHE, 'root');
  fetchPackages(root);
  const boot = path.join(root, 'boot');
  fs.copyFileSync(
    path.join(
      boot,
      fs.readdirSync(boot).find((f) => f.startsWith('vmlinuz-')),
    ),
    kernelPath,
  );
  extractVmlinux(kernelPath, vmlinuxPath);

  const inner = path.join(CACHE, 'initramfs-root');
  fs.rmSync(inner, { recursive: true, force: true });
  busyboxTree(inner, path.join(root, 'bin', 'busybox'), ['sh', 'mount', 'cat', 'echo', 'insmod', 'touch', 'reboot']);
  guestModules(root, path.join(inner, 'modules'));
  vsockEcho('gcc', path.join(inner, 'bin', 'vsock_echo'));
  for (const d of ['proc', 'sys', 'dev', 'mnt']) fs.mkdirSync(path.join(inner, d), { recursive: true });
  fs.writeFileSync(path.join(inner, 'init'), INIT, { mode: 0o755 });
  // init's stdin and stdout, before devtmpfs is mounted.
  cpio(inner, initrdPath, [{ name: 'dev/console', mode: 0o20600, rdev: [5, 1] }]);
  fs.rmSync(inner, { recursive: true, force: true });
  ext4Disk(diskPath, path.join(CACHE, 'disk-files'));
  return result;
}

module.exports = { prepare };

if (require.main === module) console.log(prepare());
