// The port-I/O hypercall ABI: id, four arguments, a result back in RAX.
import { DEFAULT_HYPERCALL_PORT, VcpuError } from '../ts';
import { describeKvm, longMode } from './helpers';

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
