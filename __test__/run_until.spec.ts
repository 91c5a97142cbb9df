// The native loop: handles Io/Mmio/Hypercall exits with JS handlers, returns the rest.
import { describeKvm, helloDevice, longMode } from './helpers';

describeKvm('runUntil', () => {
  test('handles I/O and hypercalls, returns the first unhandled exit', () => {
    const { vm, vcpu } = longMode('hello');
    const device = helloDevice();
    const exit = vcpu.runUntil({ io: device.io, hypercall: () => {} });
    expect(exit).toEqual({ kind: 'Hlt' });
    expect(device.text()).toBe('Hello from a 64-bit guest on /dev/kvm!\n');
    // A handler that sets no result: the guest gets the default, all ones.
    expect(device.answer()).toBe((1n << 64n) - 1n);
    vm.close();
  });

  test("the hypercall handler's result is what the guest reports", () => {
    const { vm, vcpu } = longMode('hello');
    const device = helloDevice();
    const exit = vcpu.runUntil({ io: device.io, hypercall: (abi) => abi.setResults([0x1234_5678_9abcn]) });
    expect(exit).toEqual({ kind: 'Hlt' });
    expect(device.answer()).toBe(0x1234_5678_9abcn);
    vm.close();
  });

  test('an exit without a handler is returned to the caller', () => {
    const { vm, vcpu } = longMode('hello');
    expect(vcpu.runUntil({ hypercall: () => {} })).toEqual({ kind: 'Io' });
    vcpu.handleIo(() => {});
    vm.close();
  });
});
