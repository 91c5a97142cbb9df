// Resources come back: after close, after garbage collection, over many cycles.
import { readdirSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { Kvm } from '../ts';
import { describeKvm, guest } from './helpers';

setFlagsFromString('--expose-gc');
const gc: () => void = runInNewContext('gc');
const fds = () => readdirSync('/proc/self/fd').length;

function cycle(kvm: Kvm, close: boolean) {
  const vm = kvm.createVm();
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(0x1000, guest('hlt'));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: 0x1000 });
  expect(vcpu.run().kind).toBe('Hlt');
  if (close) vm.close();
}

describeKvm('lifecycle', () => {
  test('1000 create/run/close cycles leave fds and RSS flat', () => {
    const kvm = Kvm.open();
    for (let i = 0; i < 50; i++) cycle(kvm, true);
    gc();
    const fds0 = fds();
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 1000; i++) cycle(kvm, true);
    gc();
    expect(fds()).toBe(fds0);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(32 << 20);
  });

  test('VMs and vcpus that are only collected release their fds', async () => {
    const kvm = Kvm.open();
    gc();
    const fds0 = fds();
    for (let i = 0; i < 50; i++) cycle(kvm, false);
    expect(fds()).toBeGreaterThan(fds0 + 50);
    for (let i = 0; i < 5 && fds() > fds0; i++) {
      gc();
      await new Promise((r) => setImmediate(r)); // finalizers run between turns
    }
    expect(fds()).toBeLessThanOrEqual(fds0);
  });
});
