// Sandboxes: a C "plugin" (examples/plugin/plugin.c) built with the guest SDK, its
// functions called from JS, a host function it calls back, a timeout, a crash with its
// rip, and a reset. Run with `npm run example -- sandbox` (needs gcc or clang).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { buildGuest, Sandbox, SandboxError } from 'vcpu';

const PLUGIN = join(dirname(require.resolve('vcpu/package.json')), 'examples', 'plugin', 'plugin.c');

export function main(_argv: readonly string[] = [], log: (line: string) => void = console.log): void {
  const dir = mkdtempSync(join(tmpdir(), 'vcpu-plugin-'));
  try {
    const guest = join(dir, 'plugin.elf');
    buildGuest([PLUGIN], guest); // what `npx vcpu build-guest plugin.c -o plugin.elf` does
    const sb = Sandbox.create({
      guest,
      timeoutMs: 100,
      host: {
        log: (message) => {
          log(`host: the guest logged '${String(message)}'`);
          return 41n;
        },
      },
    });
    log(`exports: ${sb.exports.sort().join(', ')}`);
    log(`fib(50) = ${sb.call('fib', 50n)}`);
    log(`upper('hello, sandbox') = ${String(sb.call('upper', 'hello, sandbox'))}`);
    log(`checksum = ${sb.call('checksum', new TextEncoder().encode('bytes in, a number out'))}`);
    log(`greet() = ${sb.call('greet')}`);
    for (const fn of ['forever', 'crash']) {
      try {
        sb.call(fn);
      } catch (e) {
        const err = e as SandboxError;
        log(`${fn}(): ${err.code}, rip 0x${err.rip?.toString(16)}: ${err.message}`);
      }
      sb.reset(); // back to just after start, in place
      log(`after reset: fib(10) = ${sb.call('fib', 10n)}`);
    }
    sb.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) main();
