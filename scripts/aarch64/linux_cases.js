// The arm64 suite's Linux cases (see suite.js): Debian's arm64 kernel booted through
// `bootLinux` with a busybox initramfs (both put in /linux by scripts/test-aarch64.js),
// driven through its console as a user at a shell would.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');
const net = require('node:net');
const { ReadStream } = require('node:tty');

const LINUX = process.env.VCPU_LINUX_DIR ?? '/linux';
/** How long a boot or an answer may take: the kernel runs under emulated EL2 here. */
const PATIENCE = Number(process.env.VCPU_LINUX_PATIENCE ?? 600) * 1000;
const PROMPT = 'vcpu-guest: ready';

/** Collects a machine's console output and waits for what a test expects in it. */
class Console {
  constructor(linux) {
    this.text = '';
    this.waiters = [];
    let line = '';
    linux.output.on('data', (d) => {
      this.text += d.toString('latin1');
      // The guest's console goes to the log too, line by line, marked as the guest's.
      const lines = (line + d.toString('latin1')).split('\n');
      line = lines.pop();
      for (const l of lines) console.log(`  guest| ${l.replace(/\r$/, '')}`);
      this.waiters = this.waiters.filter((w) => !w());
    });
  }

  /** Resolves with the match of `re` in the output after `from`. */
  until(re, from = 0, ms = PATIENCE) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${re} within ${ms} ms; console:\n${this.text.slice(-3000)}`)),
        ms,
      );
      const check = () => {
        const m = re.exec(this.text.slice(from));
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
        return !!m;
      };
      if (!check()) this.waiters.push(check);
    });
  }
}

/** Types `command` and waits for the line `re` after it. */
async function ask(linux, con, command, re) {
  const from = con.text.length;
  linux.input.write(`${command}\n`);
  return con.until(re, from);
}

function boot(pkg, options = {}) {
  const { bootLinux } = require(pkg);
  return bootLinux({
    kernel: path.join(LINUX, 'Image'),
    initrd: path.join(LINUX, 'initramfs.cpio'),
    memory: '256M',
    cpus: 2,
    ...options,
  });
}

module.exports = (pkg) => ({
  async "bootLinux: Debian's arm64 kernel reaches a busybox shell; uname -a and echo $((6*7)) answer"() {
    const linux = boot(pkg);
    const con = new Console(linux);
    const run = linux.start();
    try {
      await con.until(new RegExp(PROMPT));
      const uname = await ask(linux, con, 'uname -a', /^(Linux .* aarch64 GNU\/Linux)\r?$/m);
      console.log(`guest: ${uname[1].trim()}`);
      await ask(linux, con, 'echo $((6*7))', /^42\r?$/m);
      const cpus = await ask(linux, con, 'grep -c ^processor /proc/cpuinfo', /^(\d+)\r?$/m);
      assert.equal(cpus[1], '2', 'both vcpus came up through PSCI');
      linux.input.write('poweroff -f\n');
      const exit = await run;
      assert.equal(exit.kind, 'SystemEventShutdown');
    } finally {
      linux.stop();
      await run.catch(() => {});
      linux.close();
    }
  },

  async "Debian's virtio-mmio, virtio-blk, ext4 and vsock modules: a read-only ext4 disk is read and refuses writes, vsock echoes"() {
    const uds = '/tmp/vcpu-vsock.sock';
    const linux = boot(pkg, {
      disks: [{ path: path.join(LINUX, 'disk.img'), readOnly: true }],
      vsock: { cid: 3, uds },
    });
    linux.vsock.listen(5000, (socket) => socket.pipe(socket));
    const con = new Console(linux);
    const run = linux.start();
    try {
      await con.until(new RegExp(PROMPT));
      await ask(
        linux,
        con,
        'for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "no $m"; done; echo loaded',
        /^loaded\r?$/m,
      );
      assert.doesNotMatch(con.text, /^no \w+/m, 'every module loads');
      await ask(linux, con, 'mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt', /^hello from an ext4 disk\r?$/m);
      await ask(linux, con, 'touch /mnt/new || echo refused', /^refused\r?$/m);
      assert.match(con.text, /Read-only file system/);
      await ask(linux, con, 'vsock_echo 5000 hello-over-vsock', /^vsock echo: hello-over-vsock\r?$/m);
      linux.input.write('poweroff -f\n');
      assert.equal((await run).kind, 'SystemEventShutdown');
    } finally {
      linux.stop();
      await run.catch(() => {});
      linux.close();
    }
  },

  async 'npx vcpu boot: the CLI boots the same kernel and its shell answers'() {
    const cli = path.join(pkg, 'dist', 'cli.js');
    const args = ['boot', '--kernel', path.join(LINUX, 'Image'), '--initrd', path.join(LINUX, 'initramfs.cpio')];
    const p = spawn(process.execPath, [cli, ...args, '--mem', '256M'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let text = '';
    let asked = false;
    const timer = setTimeout(() => p.kill('SIGKILL'), PATIENCE);
    p.stdout.on('data', (d) => {
      text += d;
      if (!asked && text.includes(PROMPT)) {
        asked = true;
        p.stdin.write('echo cli $((6*7)); poweroff -f\n');
      }
    });
    const code = await new Promise((resolve) => p.on('close', resolve));
    clearTimeout(timer);
    for (const l of text.split('\n').slice(-6)) console.log(`  cli| ${l.replace(/\r$/, '')}`);
    assert.match(text, /^cli 42\r?$/m);
    assert.equal(code, 0);
  },

  async 'a snapshot of the running Linux, restored in a new process, answers at its shell'() {
    const linux = boot(pkg);
    const con = new Console(linux);
    const run = linux.start();
    const file = '/tmp/linux.snap';
    try {
      await con.until(new RegExp(PROMPT));
      await ask(linux, con, 'X=41; echo before $((X+1))', /^before 42\r?$/m);
      linux.stop();
      assert.equal((await run).kind, 'Intr');
      const info = linux.snapshot(file);
      console.log(`  snapshot: ${(info.bytes / 1048576).toFixed(1)} MiB`);
    } finally {
      linux.stop();
      await run.catch(() => {});
      linux.close();
    }
    // The shell's variable X lives on in the restored guest.
    const out = await new Promise((resolve, reject) => {
      const p = spawn(process.execPath, [path.join(__dirname, 'restore_child.js'), pkg, file], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let text = '';
      const timer = setTimeout(() => p.kill('SIGKILL'), PATIENCE);
      p.stdout.on('data', (d) => (text += d));
      p.on('error', reject);
      p.on('close', () => {
        clearTimeout(timer);
        for (const l of text.split('\n')) console.log(`  restored| ${l.replace(/\r$/, '')}`);
        resolve(text);
      });
    });
    fs.rmSync(file, { force: true });
    assert.match(out, /^restored 47\r?$/m);
    assert.match(out, /exit SystemEventShutdown/);
  },

  // The debugger is gdb-multiarch on the machine running qemu: scripts/test-aarch64.js
  // connects it through this guest's second serial port (/dev/ttyAMA1), which the case
  // bridges to the stub, and says on the console when it is done.
  async 'gdb-multiarch attached from the host stops the guest kernel at a symbol'() {
    const linux = boot(pkg, { gdb: {} });
    const con = new Console(linux);
    const run = linux.start();
    let bridge;
    try {
      await con.until(new RegExp(PROMPT));
      const symbol = '__arm64_sys_newuname';
      const line = await ask(
        linux,
        con,
        `grep ' ${symbol}$' /proc/kallsyms`,
        /^([0-9a-f]{16}) [Tt] __arm64_sys_newuname\r?$/m,
      );
      // A variable the timer tick writes, for a watchpoint.
      const jiffies = await ask(linux, con, "grep ' jiffies$' /proc/kallsyms", /^([0-9a-f]{16}) [Dd] jiffies\r?$/m);
      // Raw bytes, no modem lines (QEMU's UART raises no carrier). A tty stream (libuv's
      // own, not the thread pool's blocking reads) so the process can exit afterwards.
      execFileSync('/bin/busybox', ['stty', '-F', '/dev/ttyAMA1', 'raw', '-echo', 'clocal', '-crtscts']);
      const fd = fs.openSync('/dev/ttyAMA1', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
      const tty = new ReadStream(fd);
      tty.setRawMode(true);
      const sock = net.connect(linux.gdb.port, '127.0.0.1');
      bridge = { tty, sock, in: 0, out: 0 };
      tty.on('data', (d) => {
        bridge.in += d.length;
        sock.write(d);
      });
      sock.on('data', (d) => {
        bridge.out += d.length;
        fs.writeSync(fd, d);
      });
      sock.on('error', (e) => console.log(`  bridge: ${e.message}`));
      const done = new Promise((resolve) => {
        process.stdin.on('data', (d) => d.toString().includes('gdb-done') && resolve());
      });
      console.log(`vcpu-aarch64-gdb: attach ${symbol} ${line[1]} ${jiffies[1]}`);
      // uname enters the kernel at the symbol: keep asking until the debugger is done.
      const from = con.text.length;
      const asking = setInterval(() => linux.input.write('uname\n'), 3000);
      await done;
      clearInterval(asking);
      console.log(`  bridge: ${bridge.in} bytes from gdb, ${bridge.out} to it`);
      process.stdin.pause();
      // Detached, the guest runs on and answers.
      await con.until(/^Linux\r?$/m, from);
      linux.input.write('poweroff -f\n');
      assert.equal((await run).kind, 'SystemEventShutdown');
    } finally {
      bridge?.sock.destroy();
      bridge?.tty.destroy();
      linux.stop();
      await run.catch(() => {});
      linux.close();
    }
  },
});
