// The examples run and do what they say.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { main as hypercall } from '../examples/hypercall';
import { main as mmioDevice } from '../examples/mmio-device';
import { describeKvm } from './helpers';

describeKvm('examples', () => {
  test('mmio-device: a TypeScript adder answers the guest', () => {
    const lines: string[] = [];
    mmioDevice((l) => lines.push(l));
    expect(lines).toContain('guest reports 42 on port 3f9h');
    expect(lines.filter((l) => l.startsWith('mmio write'))).toHaveLength(2);
    expect(lines[lines.length - 1]).toBe('exit: Hlt');
  });

  test('hypercall: host functions work on guest buffers', () => {
    const lines: string[] = [];
    hypercall((l) => lines.push(l));
    expect(lines).toEqual(['guest says: HELLO FROM GUEST MEMORY', 'exit: Hlt']);
  });

  test('workers: two vcpus count to the expected total', () => {
    const out = execFileSync(process.execPath, [join(__dirname, '..', 'examples', 'workers.js')], { encoding: 'utf8' });
    expect(out).toContain('counter = 10000 (expected 10000)');
  });
});
