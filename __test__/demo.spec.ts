// `npm start`: the demo guest greets and gets its sum through a hypercall.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { describeKvm } from './helpers';

describeKvm('demo', () => {
  test('npm start prints the greeting, the hypercall and the answer', () => {
    const out = execFileSync(process.execPath, [join(__dirname, '..', 'examples', 'hello.js')], { encoding: 'utf8' });
    expect(out).toContain('guest: Hello from a 64-bit guest on /dev/kvm!');
    expect(out).toContain('= 54');
    expect(out).toContain("guest: the host's answer came back as 54");
    expect(out).toContain('vcpu exit: Hlt');
  });
});
