// What the opt-in Linux suites put in a guest's initramfs, for either architecture
// (scripts/test-aarch64.js for arm64, scripts/debian-linux.js for x86-64): a cpio
// archive of a directory tree, busybox with its applets, Debian's driver modules with
// what they depend on, the static vsock client, and the ext4 disk the guest mounts.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

/**
 * The drivers a guest loads to reach its disk and the host's vsock (Debian builds them
 * as modules), with crc32c_generic, which ext4 asks the crypto API for (modprobe would
 * load it).
 */
const GUEST_MODULES = ['virtio_mmio', 'virtio_blk', 'crc32c_generic', 'ext4', 'vmw_vsock_virtio_transport'];

/** What the guest reads from the disk made by `ext4Disk`. */
const DISK_TEXT = 'hello from an ext4 disk';

/** The shell line that loads `/modules` in order and says `loaded` (or `no NAME`). */
const LOAD_MODULES = 'for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "no $m"; done; echo loaded';

/**
 * A newc cpio archive of the tree at `root` (files, directories, symlinks) written to
 * `file`, then `extra` entries ({ name, mode, rdev: [major, minor] }): device nodes,
 * which a tree built without root cannot hold.
 */
function cpio(root, file, extra = []) {
  const fd = fs.openSync(file, 'w');
  let ino = 1;
  const entry = (name, mode, data, size, [rmajor, rminor] = [0, 0]) => {
    const fields = [ino++, mode, 0, 0, 1, 0, size, 0, 0, rmajor, rminor, name.length + 1, 0];
    const head = `070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}${name}\0`;
    fs.writeSync(fd, head.padEnd(Math.ceil(head.length / 4) * 4, '\0'));
    if (data) {
      fs.writeSync(fd, data);
      fs.writeSync(fd, Buffer.alloc((4 - (size % 4)) % 4));
    }
  };
  const walk = (rel) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = fs.lstatSync(abs);
      if (st.isSymbolicLink()) {
        const target = Buffer.from(fs.readlinkSync(abs));
        entry(r, 0o120777, target, target.length);
      } else if (st.isDirectory()) {
        entry(r, 0o040755, null, 0);
        walk(r);
      } else {
        const data = fs.readFileSync(abs);
        entry(r, 0o100000 | (st.mode & 0o777), data, data.length);
      }
    }
  };
  walk('');
  for (const e of extra) entry(e.name, e.mode, null, 0, e.rdev);
  entry('TRAILER!!!', 0, null, 0);
  fs.closeSync(fd);
}

/** `busybox` copied to `root`/bin with a symlink for each of `tools`. */
function busyboxTree(root, busybox, tools) {
  const bin = path.join(root, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  if (path.resolve(busybox) !== path.join(bin, 'busybox')) fs.copyFileSync(busybox, path.join(bin, 'busybox'));
  fs.chmodSync(path.join(bin, 'busybox'), 0o755);
  for (const tool of tools) fs.symlinkSync('busybox', path.join(bin, tool));
}

/**
 * Debian's modules `names` and those they depend on (the `depends=` of each one's
 * modinfo; the package has no modules.dep, which depmod writes at install), from the
 * kernel package unpacked at `kernelRoot` (`.ko`, or `.ko.xz` as newer packages ship
 * them), uncompressed into `dir` with `order`, the list to insmod in. Built-in ones are
 * skipped.
 */
function guestModules(kernelRoot, dir, names = GUEST_MODULES) {
  const base = path.join(kernelRoot, 'lib', 'modules');
  const tree = path.join(base, fs.readdirSync(base)[0], 'kernel');
  const files = new Map();
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ko(\.xz)?$/.test(e.name)) files.set(e.name.replace(/\.ko(\.xz)?$/, '').replace(/-/g, '_'), p);
    }
  };
  walk(tree);
  fs.mkdirSync(dir, { recursive: true });
  const order = [];
  const visit = (name) => {
    const file = files.get(name);
    if (!file || order.includes(name)) return;
    const ko = file.endsWith('.xz')
      ? execFileSync('xz', ['-dc', file], { maxBuffer: 64 << 20 })
      : fs.readFileSync(file);
    const depends = /depends=([^\0]*)/.exec(ko.toString('latin1'))?.[1] ?? '';
    for (const d of depends.split(',').filter(Boolean)) visit(d.replace(/-/g, '_'));
    fs.writeFileSync(path.join(dir, `${name}.ko`), ko);
    order.push(name);
  };
  for (const n of names) visit(n);
  fs.writeFileSync(path.join(dir, 'order'), `${order.join('\n')}\n`);
}

/** The vsock client (guests/linux/vsock_echo.c), static, built with `gcc` into `out`. */
function vsockEcho(gcc, out) {
  const source = path.join(__dirname, '..', 'guests', 'linux', 'vsock_echo.c');
  execFileSync(gcc, ['-static', '-O2', '-o', out, source], { stdio: 'inherit' });
}

/** An 8 MiB ext4 image at `file` holding hello.txt (mke2fs -d, no root needed). */
function ext4Disk(file, scratch) {
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(scratch, { recursive: true });
  fs.writeFileSync(path.join(scratch, 'hello.txt'), `${DISK_TEXT}\n`);
  fs.rmSync(file, { force: true });
  execFileSync('mke2fs', ['-q', '-t', 'ext4', '-d', scratch, file, '8M'], { stdio: 'inherit' });
  fs.rmSync(scratch, { recursive: true, force: true });
}

module.exports = { GUEST_MODULES, DISK_TEXT, LOAD_MODULES, cpio, busyboxTree, guestModules, vsockEcho, ext4Disk };
