// The examples run and do what they say.
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { main as hypercall } from '../examples/hypercall';
import { main as mmioDevice } from '../examples/mmio-device';
import { main as sandbox } from '../examples/sandbox';
import { main as snapshotClones } from '../examples/snapshot-clones';
import { main as virtioDevice } from '../examples/virtio-device';
import { main as vmm } from '../examples/vmm';
import { describeKvm } from './helpers';

describeKvm('examples', () => {
  test('mmio-device: a TypeScript adder answers the guest', () => {
    const lines: string[] = [];
    mmioDevice([], (l) => lines.push(l));
    expect(lines).toContain('guest reports 42 on port 3f9h');
    expect(lines.filter((l) => l.startsWith('mmio write'))).toHaveLength(2);
    expect(lines[lines.length - 1]).toBe('exit: Hlt');
  });

  test('hypercall: host functions work on guest buffers', () => {
    const lines: string[] = [];
    hypercall([], (l) => lines.push(l));
    expect(lines).toEqual(['guest says: HELLO FROM GUEST MEMORY', 'exit: Hlt']);
  });

  test('snapshot-clones: three restores from one snapshot each go on from 1000 on their own', () => {
    const lines: string[] = [];
    snapshotClones([], (l) => lines.push(l));
    expect(lines[0]).toMatch(/^snapshot: counted to 1000, \d+ pages written$/);
    expect(lines.slice(1).map((l) => /at (\d+)/.exec(l)?.[1])).toEqual(['1001', '1010', '1100']);
  });

  test('sandbox: a C plugin answers, calls the host back, times out, crashes with its rip, and resets', () => {
    const lines: string[] = [];
    sandbox([], (l) => lines.push(l));
    expect(lines).toEqual([
      'exports: checksum, crash, fib, forever, greet, upper',
      'fib(50) = 12586269025',
      "upper('hello, sandbox') = HELLO, SANDBOX",
      expect.stringMatching(/^checksum = -?\d+$/),
      "host: the guest logged 'hello from the guest'",
      'greet() = 42',
      expect.stringMatching(/^forever\(\): ETIMEDOUT, rip 0x2[0-9a-f]{5}: /),
      'after reset: fib(10) = 55',
      expect.stringMatching(/^crash\(\): EFAULT, rip 0x2[0-9a-f]{5}: .*page fault.* writing 0x0$/),
      'after reset: fib(10) = 55',
    ]);
  });

  test('virtio-device: a TypeScript device upper-cases what the guest driver sends', async () => {
    const lines: string[] = [];
    await virtioDevice([], (l) => lines.push(l));
    expect(lines).toEqual(['echo device at 0xd0000000: 13 bytes back, "HELLO, DEVICE", interrupted']);
  });

  test('vmm: boots the test kernel and reports a power-off', async () => {
    const lines: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write; // the guest's console
    try {
      expect(await vmm([], (l) => lines.push(l))).toEqual({ kind: 'SystemEventReset' });
    } finally {
      process.stdout.write = write;
    }
    expect(lines[0]).toBe('vmm: kernel entry 100200h, zero page 7000h');
    expect(lines[1]).toMatch(/^vmm: guest powered off \(i8042 reset\) after \d+ ms$/);
  });

  test('the documented command runs each example: npm run example -- <name>', () => {
    const run = (name: string) =>
      execFileSync('npm', ['run', '--silent', 'example', '--', name], { cwd: join(__dirname, '..'), encoding: 'utf8' });
    expect(run('mmio-device')).toContain('guest reports 42 on port 3f9h');
    expect(run('hypercall')).toContain('guest says: HELLO FROM GUEST MEMORY');
    expect(run('hello')).toContain('Hello from a 64-bit guest on /dev/kvm!');
    expect(run('snapshot-clones')).toMatch(/^snapshot: counted to 1000/m);
    expect(run('sandbox')).toContain('greet() = 42');
    expect(run('workers')).toContain('counter = 10000 (expected 10000)');
    // The vmm example logs to stderr: its lines, as the README shows them.
    const vmm = spawnSync('npm', ['run', '--silent', 'example', '--', 'vmm', '--', '--seconds', '30'], {
      cwd: join(__dirname, '..'),
      encoding: 'utf8',
    });
    expect(vmm.stderr).toMatch(/vmm: guest powered off \(i8042 reset\) after \d+ ms/);
    expect(vmm.status).toBe(0);
  }, 120000);

  test('workers: two vcpus count to the expected total', () => {
    const out = execFileSync(process.execPath, [join(__dirname, '..', 'examples', 'workers.js')], { encoding: 'utf8' });
    expect(out).toContain('counter = 10000 (expected 10000)');
  });
});
