// The native loop: handles Io/Mmio/Hypercall exits with JS handlers, returns the rest.
import { describeKvm, longMode } from './helpers';

describeKvm('runUntil', () => {
  test('handles I/O and hypercalls, returns the first unhandled exit', () => {
    const { vm, vcpu } = longMode('hello');
    let text = '';
    const exit = vcpu.runUntil({
      io: (p) => {
        if (p.address === 0x3f8) text += String.fromCharCode(p.data[0]);
      },
      hypercall: (abi) => abi.setResults([99n]),
    });
    expect(exit).toEqual({ kind: 'Hlt' });
    expect(text).toBe('Hello from a 64-bit guest on /dev/kvm!\n');
    vm.close();
  });

  test('an exit without a handler is returned to the caller', () => {
    const { vm, vcpu } = longMode('hello');
    expect(vcpu.runUntil({ hypercall: () => {} })).toEqual({ kind: 'Io' });
    vcpu.handleIo(() => {});
    vm.close();
  });
});
