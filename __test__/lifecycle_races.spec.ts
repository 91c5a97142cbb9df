// Lifecycle races under stress: closing a VM while vcpus run in several workers, a
// vcpu's runAsync kicked again and again, workers terminated and the process exiting
// while vcpu threads call back into JS, and exits with data coming back after a close.
// The races run in child processes (`stress/lifecycle.js`), so a crash fails a test.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { VcpuError } from '../ts';
import { describeKvm, longMode } from './helpers';

const STRESS = join(__dirname, 'stress', 'lifecycle.js');

/** Runs a stress job; its JSON result (the test fails on a crash, with its output). */
function stress(...args: string[]): any {
  const r = spawnSync(process.execPath, [STRESS, ...args], { encoding: 'utf8', timeout: 240_000 });
  const output = `exit ${r.status} signal ${r.signal}\n${r.stdout}\n${r.stderr}`;
  expect({ status: r.status, signal: r.signal, output }).toEqual({ status: 0, signal: null, output });
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** Every value of `seen` is among `allowed`, and the counts add up to `total`. */
function onlyAllowed(seen: Record<string, number>, allowed: string[], total: number): void {
  expect(Object.keys(seen).filter((k) => !allowed.includes(k))).toEqual([]);
  expect(Object.values(seen).reduce((a, b) => a + b, 0)).toBe(total);
}

describeKvm('lifecycle races', () => {
  test.each([
    [2, 200],
    [4, 200],
  ])(
    'closing the VM while vcpus run in %i workers, %i rounds',
    (workers, rounds) => {
      const seen = stress('close', String(workers), String(rounds));
      // Each vcpu stops with Intr (kicked out) or ECLOSED (the next run after the close).
      onlyAllowed(seen, ['Intr', 'VcpuError:ECLOSED'], workers * rounds);
      expect(seen.Intr).toBeGreaterThan(0);
    },
    240_000,
  );

  test('worker.terminate() while runAsync has handlers in flight, 30 rounds; fds back to baseline', () => {
    const { seen, fdsBefore, fdsAfter, open } = stress('terminate', '30');
    expect(seen).toEqual({ handling: 30, 'exit:1': 30 });
    // No vcpu or VM fd is left, and nothing else grew (the host's own may only shrink).
    expect(open.filter((f: string) => f.startsWith('anon_inode:kvm'))).toEqual([]);
    expect({ fdsAfter, open }).toEqual({ fdsAfter: Math.min(fdsAfter, fdsBefore), open });
  }, 120_000);

  test('a data-carrying exit coming back after a close: a VcpuError or the exit, never a plain Error', () => {
    const seen = stress('run-closed', '100');
    onlyAllowed(
      seen,
      [
        'async:MsrAccess',
        'async:Intr',
        'async:VcpuError:ECLOSED',
        'sync:MsrAccess',
        'sync:Intr',
        'sync:VcpuError:ECLOSED',
      ],
      200,
    );
  }, 120_000);

  test('process.exit() while runAsync calls handlers: a clean exit', () => {
    const script = `
      const vcpu = require(${JSON.stringify(join(__dirname, '..', 'dist'))});
      const vm = vcpu.Kvm.open().createVm();
      vm.addMemory({ guestAddress: 0, size: 2 << 20 });
      vm.write(0x1000, [0xe6, 0x10, 0xeb, 0xfc]); // out 0x10, al; jmp back
      const cpu = vm.createVcpu(0);
      cpu.setupLongMode({ rip: 0x1000 });
      let n = 0;
      cpu.runAsync({ io: () => { if (++n === 100) setImmediate(() => process.exit(7)); } });`;
    for (let i = 0; i < 10; i++) {
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
      expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 7, signal: null, stderr: '' });
    }
  }, 120_000);

  test('runAsync run 20 times on one spinning vcpu: each stopped by a kick within 1 s', async () => {
    const { vm, vcpu } = longMode('spin');
    const handle = vcpu.signalHandle();
    for (let round = 0; round < 20; round++) {
      const done = vcpu.runAsync({});
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
      const kicked = Date.now();
      handle.signalImmediateExit();
      const exit = await Promise.race([done, new Promise((r) => setTimeout(() => r('not stopped'), 1000))]);
      expect({ round, exit }).toEqual({ round, exit: { kind: 'Intr' } });
      expect(Date.now() - kicked).toBeLessThan(1000);
    }
    vm.close();
  });

  test('run() on a vcpu whose VM closed is a VcpuError ECLOSED', () => {
    const { vm, vcpu } = longMode('msr', { userspaceMsr: true });
    // The exit carries data; after the close its payload is gone, which is ECLOSED.
    vm.close();
    let error: unknown;
    try {
      vcpu.run();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VcpuError);
    expect((error as VcpuError).code).toBe('ECLOSED');
  });
});
