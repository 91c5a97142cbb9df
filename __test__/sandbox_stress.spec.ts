// Sandboxes under stress: several workers, hundreds of rounds each, random timing; calls,
// timeouts, resets, closes under a callAsync, a worker terminated mid-call. Run in a
// child process (stress/sandbox.js), so a crash fails the test.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Sandbox } from '../ts';
import { buildGuest } from '../ts/build_guest';
import { describeKvm } from './helpers';

describeKvm('sandbox stress', () => {
  test('four workers × 200 rounds: every result right, every failure a VcpuError, no crash', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vcpu-sandbox-stress-'));
    try {
      const elf = join(dir, 'guest.elf');
      buildGuest([join(__dirname, 'sandbox', 'guest.c')], elf);
      const file = join(dir, 'ready.snap');
      const sb = Sandbox.create({ guest: elf });
      sb.snapshot(file);
      sb.close();
      const out = execFileSync(process.execPath, [join(__dirname, 'stress', 'sandbox.js'), file, '4', '200'], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      const seen = JSON.parse(out) as Record<string, number>;
      const bad = Object.keys(seen).filter((k) => /WRONG|error|not a VcpuError|returned/.test(k));
      expect(bad).toEqual([]);
      expect(seen['call ok']).toBeGreaterThan(100);
      expect(seen.timeout).toBeGreaterThan(50);
      expect(seen['closed under callAsync']).toBeGreaterThan(50);
      expect(seen['reset ok']).toBeGreaterThan(50);
      expect(seen.terminated).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
