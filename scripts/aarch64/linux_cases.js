// The arm64 suite's Linux cases (see suite.js): Debian's arm64 kernel booted through
// `bootLinux` with a busybox initramfs (both put in /linux by scripts/test-aarch64.js),
// driven through its console as a user at a shell would.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');

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
      const timer = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms; console:\n${this.text.slice(-3000)}`)), ms);
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
});
