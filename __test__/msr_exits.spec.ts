// MSR exits (KVM_CAP_X86_USER_SPACE_MSR): a guest's rdmsr/wrmsr of an MSR KVM does not
// know, answered in JS.
import { describeKvm, longMode } from './helpers';
import type { MsrAccess } from '../ts';

describeKvm('MSR exits', () => {
  test("a read gets the handler's data in edx:eax; a write brings its value", () => {
    const { vm, vcpu } = longMode('msr', { userspaceMsr: true });
    const seen: MsrAccess[] = [];
    const dwords: number[] = [];
    const exit = vcpu.runUntil({
      msr: (m) => {
        seen.push({ ...m });
        if (!m.write) m.data = 0xdead_beef_0000_1234n;
      },
      io: (p) => dwords.push(Buffer.from(p.data).readUInt32LE(0)),
    });
    expect(exit.kind).toBe('Hlt');
    expect(dwords).toEqual([0x0000_1234, 0xdead_beef]);
    expect(seen).toEqual([
      { index: 0x4b564d99, write: false, data: 0n, fault: false },
      { index: 0x4b564d99, write: true, data: 0x1122_3344_5566_7788n, fault: false },
    ]);
    vm.close();
  });

  test('run() + handleMsr, and fault = true gives the guest #GP (here a triple fault: no IDT)', () => {
    const { vm, vcpu } = longMode('msr', { userspaceMsr: true });
    const exit = vcpu.run();
    expect(exit).toEqual({ kind: 'MsrAccess', index: 0x4b564d99, data: 0n, write: false });
    vcpu.handleMsr((m) => {
      m.fault = true;
    });
    expect(() => vcpu.handleMsr(() => {})).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(vcpu.run().kind).toBe('Shutdown');
    vm.close();
  });

  test('without userspaceMsr the access never reaches the host', () => {
    const { vm, vcpu } = longMode('msr');
    expect(vcpu.run().kind).toBe('Shutdown'); // #GP with no IDT
    vm.close();
  });

  test('vm.enableCapability turns it on after creation', () => {
    const { vm, vcpu } = longMode('msr');
    vm.enableCapability(188, [2n, 0n, 0n, 0n]); // KVM_CAP_X86_USER_SPACE_MSR, unknown MSRs
    expect(vcpu.run().kind).toBe('MsrAccess');
    vm.close();
  });
});

describeKvm('MSR exits on the async runner', () => {
  test('runAsync answers MSR exits on the JS thread', async () => {
    const { vm, vcpu } = longMode('msr', { userspaceMsr: true });
    const dwords: number[] = [];
    const writes: bigint[] = [];
    const exit = await vcpu.runAsync({
      msr: (m) => {
        if (m.write) writes.push(m.data);
        else m.data = 0x0102_0304_0506_0708n;
      },
      io: (p) => dwords.push(Buffer.from(p.data).readUInt32LE(0)),
    });
    expect(exit.kind).toBe('Hlt');
    expect(dwords).toEqual([0x0506_0708, 0x0102_0304]);
    expect(writes).toEqual([0x1122_3344_5566_7788n]);
    vm.close();
  });
});
