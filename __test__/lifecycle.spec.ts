// Resources come back: after close, after garbage collection, over many cycles.
import { readdirSync, readFileSync } from 'node:fs';
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

  test('closing releases the kernel vcpu at once: no kvm_run mapping waits for GC', () => {
    const kvm = Kvm.open();
    const mappings = () =>
      readFileSync('/proc/self/maps', 'utf8')
        .split('\n')
        .filter((l) => l.includes('kvm-vcpu')).length;
    const before = mappings();
    for (let i = 0; i < 200; i++) cycle(kvm, true);
    expect(mappings()).toBe(before);
  });

  test('a kept exit-data view becomes empty after close, never dangling', () => {
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('pio_out'));
    const vcpu = vm.createVcpu(0);
    vcpu.setupLongMode({ rip: 0x1000 });
    expect(vcpu.run().kind).toBe('Io');
    let kept: Uint8Array = new Uint8Array(1);
    vcpu.handleIo((p) => (kept = p.data));
    expect(kept[0]).toBe(0x11);
    vm.close();
    gc();
    expect(kept.length).toBe(0);
    expect(kept[0]).toBeUndefined();
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

describeKvm('closing /dev/kvm', () => {
  test('Kvm.close releases its fd; VMs created before keep working', () => {
    const fds0 = fds();
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    kvm.close();
    kvm.close();
    expect(() => kvm.createVm()).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('hlt'));
    const vcpu = vm.createVcpu(0);
    vcpu.setupLongMode({ rip: 0x1000 });
    expect(vcpu.run().kind).toBe('Hlt');
    vm.close();
    expect(fds()).toBeLessThanOrEqual(fds0);
  });
});

describeKvm('closing from a handler', () => {
  test('a vcpu closed inside runUntil is released when the loop returns', () => {
    const kvm = Kvm.open();
    const fds0 = fds();
    const vm = kvm.createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    vm.write(0x1000, guest('pio_out'));
    const vcpu = vm.createVcpu(0);
    vcpu.setupLongMode({ rip: 0x1000 });
    let thrown: unknown;
    try {
      vcpu.runUntil({ io: () => vcpu.close() });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'ECLOSED' });
    expect(vcpu.closed).toBe(true);
    vm.close();
    expect(fds()).toBeLessThanOrEqual(fds0);
  });
});
