// The port-I/O hypercall ABI: id, four arguments, a result back in RAX.
import { DEFAULT_HYPERCALL_PORT, VcpuError } from '../ts';
import { describeKvm, longMode } from './helpers';

/** The code of the VcpuError `fn` throws. */
function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof VcpuError ? e.code : 'not a VcpuError';
  }
  return undefined;
}

describeKvm('hypercalls', () => {
  test('four arguments in, the result back in rax', () => {
    const { vm, vcpu } = longMode('hypercall');
    expect(vcpu.run()).toEqual({ kind: 'Hypercall' });
    let seen: unknown;
    vcpu.handleHypercall((abi) => {
      seen = { id: abi.hypercallId, args: abi.args.slice(0, 4), arg3: abi.getArgument(3), none: abi.getArgument(6) };
      expect(abi.getResults()[0]).toBe(0xffffffffffffffffn);
      abi.setResults([abi.args.slice(0, 4).reduce((a, b) => a + b) * 10n]);
    });
    expect(seen).toEqual({ id: 7n, args: [1n, 2n, 3n, 4n], arg3: 4n, none: undefined });
    expect(vcpu.run().kind).toBe('Hlt');
    const regs = vcpu.getRegs();
    expect(regs.rax).toBe(100n);
    expect([regs.rbx, regs.rcx]).toEqual([1n, 2n]); // results not set keep the registers
    vm.close();
  });

  test('an unanswered hypercall returns -1', () => {
    const { vm, vcpu } = longMode('hypercall');
    expect(vcpu.run().kind).toBe('Hypercall');
    vcpu.handleHypercall(() => {});
    expect(vcpu.run().kind).toBe('Hlt');
    expect(vcpu.getRegs().rax).toBe(0xffffffffffffffffn);
    vm.close();
  });

  test('buffer helpers read and write guest memory named by arguments', () => {
    const { vm, vcpu } = longMode('hypercall');
    vm.write(1, Buffer.from('hello')); // argument 0 (rbx) = 1, argument 1 (rcx) = 2
    expect(vcpu.run().kind).toBe('Hypercall');
    vcpu.handleHypercall((abi) => {
      expect(abi.readString(0, 1)).toBe('he');
      abi.writeBuffer(0, Buffer.from('HE'));
      expect(() => abi.setResults([1n, 2n, 3n, 4n, 5n])).toThrow(VcpuError);
      abi.setResults([-2n, 5]);
    });
    expect(Buffer.from(vm.read(1, 5)).toString()).toBe('HEllo');
    expect(vcpu.run().kind).toBe('Hlt');
    const regs = vcpu.getRegs();
    expect([regs.rax, regs.rbx]).toEqual([0xfffffffffffffffen, 5n]);
    vm.close();
  });

  test('a guest naming a 2^38-byte buffer gets EFAULT; the host allocates nothing for it', () => {
    const { vm, vcpu } = longMode('hypercall_huge_length');
    const rss = process.memoryUsage().rss;
    const errors: unknown[] = [];
    const exit = vcpu.runUntil({
      hypercall: (abi) => {
        expect(abi.getArgument(1)).toBe(1n << 38n);
        for (const read of [() => abi.readBuffer(0, 1), () => abi.readString(0, 1)]) {
          try {
            read();
          } catch (e) {
            errors.push(e);
          }
        }
        abi.setResults([-14n]);
      },
    });
    expect(exit.kind).toBe('Hlt');
    expect(errors.map((e) => e instanceof VcpuError && e.code)).toEqual(['EFAULT', 'EFAULT']);
    expect(vcpu.getRegs().rax).toBe(BigInt.asUintN(64, -14n));
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 << 20);
    vm.close();
  });

  test('vm.read copies at most 1 GiB at once, whatever the region holds', () => {
    const { vm } = longMode('hlt');
    // A sparse 4 GiB region: reading all of it at once is refused before any allocation.
    vm.addMemory({ guestAddress: 0x1_0000_0000, size: 4 * 2 ** 30 });
    const rss = process.memoryUsage().rss;
    for (const length of [2 ** 31, 2 ** 30 + 1]) {
      let error: unknown;
      try {
        vm.read(0x1_0000_0000, length);
      } catch (e) {
        error = e;
      }
      expect([length, error instanceof VcpuError && error.code]).toEqual([length, 'EINVAL']);
    }
    // Outside every region: EFAULT, as for the guest's buffer; past 2^52: EINVAL.
    expect(errorCode(() => vm.read(0, 2 ** 38))).toBe('EFAULT');
    expect(errorCode(() => vm.read(0, 2 ** 53))).toBe('EINVAL');
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 << 20);
    expect(vm.read(0x1_0000_0000 + 2 ** 31, 16)).toEqual(new Uint8Array(16));
    vm.close();
  });

  test('the port is configurable, and null turns the ABI off', () => {
    expect(DEFAULT_HYPERCALL_PORT).toBe(0x500);
    const off = longMode('hypercall', { hypercallPort: null });
    expect(off.vcpu.run().kind).toBe('Io');
    off.vcpu.handleIo((p) => expect([p.address, p.size, p.data[0]]).toEqual([0x500, 4, 7]));
    off.vm.close();
    const other = longMode('hypercall', { hypercallPort: 0x501 });
    expect(other.vcpu.run().kind).toBe('Io');
    other.vm.close();
  });
});
