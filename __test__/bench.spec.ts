// `npm run bench` still runs: a short pass of it (few exits, one round, no callgrind),
// written to a temporary directory, with a figure for every case it reports.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describeKvm } from './helpers';

describeKvm('bench', () => {
  test('a short run measures every exit scenario in every mode', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vcpu-bench-'));
    try {
      execFileSync(process.execPath, ['--expose-gc', join(__dirname, '..', 'bench', 'run.js')], {
        env: { ...process.env, BENCH_EXITS: '500', BENCH_ROUNDS: '1', CALLGRIND: '0', BENCH_RESULTS: dir },
        stdio: 'pipe',
      });
      const result = JSON.parse(readFileSync(join(dir, 'latest.json'), 'utf8'));
      const scenarios = ['pio_out', 'pio_in', 'mmio_write', 'mmio_read', 'hypercall'];
      expect(Object.keys(result.exits).sort()).toEqual([...scenarios].sort());
      for (const scenario of scenarios) {
        for (const mode of ['rust', 'run', 'runUntil']) {
          expect(result.exits[scenario][mode].medianNs).toBeGreaterThan(0);
        }
      }
      expect(result.startup.js.medianUs).toBeGreaterThan(0);
      expect(result.kick.medianUs).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
