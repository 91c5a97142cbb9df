// Fetches a real distribution kernel and a busybox initramfs for the opt-in Linux boot
// test (VCPU_LINUX_BOOT=1): Debian's linux-image-amd64 and busybox-static, through apt,
// into .cache/linux/. The initramfs's /init prints a marker and reboots, which with
// `reboot=k` goes through the i8042: the VM stops cleanly.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const CACHE = path.join(__dirname, '..', '.cache', 'linux');
const MARKER = 'VCPU-LINUX-INIT-OK';

function sh(cmd, args, cwd = CACHE) {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

/** A newc cpio archive of `entries` ({ name, mode, data?, rdev?: [major, minor] }). */
function cpio(entries) {
  const parts = [];
  let ino = 1;
  const pad = (n) => Buffer.alloc((4 - (n % 4)) % 4);
  for (const e of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const [rmajor, rminor] = e.rdev ?? [0, 0];
    const fields = [ino++, e.mode, 0, 0, 1, 0, data.length, 0, 0, rmajor, rminor, name.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`);
    parts.push(header, name, pad(header.length + name.length), data, pad(data.length));
  }
  return Buffer.concat(parts);
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

function prepare() {
  fs.mkdirSync(CACHE, { recursive: true });
  const kernelPath = path.join(CACHE, 'vmlinuz');
  const vmlinuxPath = path.join(CACHE, 'vmlinux');
  const initrdPath = path.join(CACHE, 'initramfs.cpio');
  const result = { kernelPath, vmlinuxPath, initrdPath, marker: MARKER };
  if ([kernelPath, vmlinuxPath, initrdPath].every((p) => fs.existsSync(p))) return result;
  // The metapackage names the versioned image package.
  const deps = sh('apt-cache', ['depends', 'linux-image-amd64']);
  const image = /Depends: (linux-image-[^\s]+-amd64)/.exec(deps)?.[1];
  if (!image) throw new Error(`no kernel package behind linux-image-amd64 (run apt-get update?):\n${deps}`);
  sh('apt-get', ['download', image, 'busybox-static']);
  for (const deb of fs.readdirSync(CACHE).filter((f) => f.endsWith('.deb'))) sh('dpkg-deb', ['-x', deb, 'root']);
  const boot = path.join(CACHE, 'root', 'boot');
  fs.copyFileSync(
    path.join(
      boot,
      fs.readdirSync(boot).find((f) => f.startsWith('vmlinuz-')),
    ),
    kernelPath,
  );
  extractVmlinux(kernelPath, vmlinuxPath);
  const init = `#!/bin/busybox sh\n/bin/busybox echo ${MARKER}\n/bin/busybox reboot -f\n`;
  fs.writeFileSync(
    initrdPath,
    cpio([
      { name: 'bin', mode: 0o40755 },
      { name: 'dev', mode: 0o40755 },
      { name: 'dev/console', mode: 0o20600, rdev: [5, 1] }, // init's stdin and stdout
      { name: 'proc', mode: 0o40755 },
      { name: 'bin/busybox', mode: 0o100755, data: fs.readFileSync(path.join(CACHE, 'root', 'bin', 'busybox')) },
      { name: 'init', mode: 0o100755, data: Buffer.from(init) },
    ]),
  );
  return result;
}

module.exports = { prepare, cpio, MARKER };

if (require.main === module) console.log(prepare());
