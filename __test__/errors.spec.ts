// Bad input gets a typed VcpuError and loses nothing; closed objects say so.
import { Kvm, VcpuError } from '../ts';
import { describeKvm, longMode } from './helpers';

const code = (c: string) => expect.objectContaining({ code: c, name: 'VcpuError' });

describe('opening KVM', () => {
  test('a missing device gives ENOENT and says what to do', () => {
    let err: unknown;
    try {
      Kvm.open('/dev/no-such-kvm');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VcpuError);
    expect(err).toEqual(code('ENOENT'));
    expect((err as VcpuError).message).toMatch(/modprobe/);
    expect((err as VcpuError).op).toBe('Kvm.open');
  });
});

describeKvm('bad arguments', () => {
  test('memory: unaligned, empty, overlapping, too high, wrong types', () => {
    const vm = Kvm.open().createVm();
    expect(() => vm.addMemory({ guestAddress: 0x123, size: 4096 })).toThrow(code('EINVAL'));
    expect(() => vm.addMemory({ guestAddress: 0, size: 0 })).toThrow(code('EINVAL'));
    expect(() => vm.addMemory({ guestAddress: -4096, size: 4096 })).toThrow(code('EINVAL'));
    expect(() => vm.addMemory({ guestAddress: NaN, size: 4096 })).toThrow(code('EINVAL'));
    expect(() => vm.addMemory({ guestAddress: 2 ** 52, size: 4096 })).toThrow(code('EINVAL'));
    expect(() => vm.addMemory({ guestAddress: '0' as unknown as number, size: 4096 })).toThrow(code('EINVAL'));
    const mem = vm.addMemory({ guestAddress: 0, size: 0x2000 });
    expect(() => vm.addMemory({ guestAddress: 0x1000, size: 0x1000 })).toThrow(code('EEXIST'));
    expect(() => vm.write(0x1fff, [1, 2])).toThrow(code('EFAULT'));
    expect(() => vm.read(0, 1e15)).toThrow(code('EFAULT'));
    // Nothing was lost: the VM still works.
    vm.write(0, [1, 2, 3]);
    expect([...vm.read(0, 3)]).toEqual([1, 2, 3]);
    expect(mem.bytes[2]).toBe(3);
    vm.close();
  });

  test('vcpu ids: duplicate and out of range', () => {
    const vm = Kvm.open().createVm();
    vm.createVcpu(0);
    expect(() => vm.createVcpu(0)).toThrow(code('EEXIST'));
    expect(() => vm.createVcpu(1 << 30)).toThrow(code('EINVAL'));
    expect(() => vm.createVcpu(-1)).toThrow(code('EINVAL'));
    vm.close();
  });

  test('handlers without a matching exit, and registers out of range', () => {
    const { vm, vcpu } = longMode('hlt');
    expect(vcpu.run().kind).toBe('Hlt');
    expect(() => vcpu.handleIo(() => {})).toThrow(code('EINVAL'));
    expect(() => vcpu.setRegs({ rax: -(2n ** 64n) })).toThrow(code('EINVAL'));
    expect(() => vcpu.setRegs({ rax: 1.5 })).toThrow(code('EINVAL'));
    vm.close();
  });
});

describeKvm('handler errors', () => {
  test('a handler that throws propagates its error and leaves the vcpu usable', () => {
    const { vm, vcpu } = longMode('pio_out');
    expect(vcpu.run().kind).toBe('Io');
    const boom = new RangeError('boom');
    expect(() =>
      vcpu.handleIo(() => {
        throw boom;
      }),
    ).toThrow(boom);
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo((p) => expect(p.address).toBe(0x12));
    expect(() =>
      vcpu.runUntil({
        io: () => {
          throw boom;
        },
      }),
    ).toThrow(boom);
    expect(vcpu.run().kind).toBe('Hlt');
    vm.close();
  });
});

describeKvm('use after close', () => {
  test('every call on a closed vcpu or VM throws ECLOSED; close is idempotent', () => {
    const { vm, vcpu } = longMode('hlt');
    vcpu.close();
    vcpu.close();
    expect(vcpu.closed).toBe(true);
    expect(() => vcpu.run()).toThrow(code('ECLOSED'));
    expect(() => vcpu.getRegs()).toThrow(code('ECLOSED'));
    expect(() => vcpu.handleIo(() => {})).toThrow(code('ECLOSED'));
    const other = vm.createVcpu(1);
    vm.close();
    vm.close();
    expect(() => other.run()).toThrow(code('ECLOSED'));
    expect(() => vm.createVcpu(2)).toThrow(code('ECLOSED'));
    expect(() => vm.read(0, 1)).toThrow(code('ECLOSED'));
  });

  test('using disposes', () => {
    let leaked;
    {
      using vm = Kvm.open().createVm();
      leaked = vm;
    }
    expect(leaked.closed).toBe(true);
  });
});
