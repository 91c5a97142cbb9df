// Dirty logging: the pages the guest writes in a slot that logs them, and no others;
// reading the log clears it.
import { describeKvm, longMode } from './helpers';

describeKvm('dirty log', () => {
  test('names exactly the pages the guest wrote; reading clears it', () => {
    const { vm, vcpu } = longMode('mem_access');
    const logged = vm.addMemory({ guestAddress: 0x20_0000, size: 0x10000, dirtyLog: true });
    vm.write(0x20_5000, new Uint8Array([1, 2, 3])); // the host's writes are not logged
    expect([...vm.getDirtyLog(logged)]).toEqual([0n]);
    vcpu.setRegs({ rbx: 0x20_3000n });
    expect(vcpu.run().kind).toBe('Hlt');
    expect([...vm.getDirtyLog(logged)]).toEqual([1n << 3n]); // page 3 of the slot
    expect([...vm.getDirtyLog(logged)]).toEqual([0n]);
    expect(vm.read(0x20_3000, 1)[0]).toBe(0x55);
    vm.close();
  });

  test('a slot without logging refuses to give a log', () => {
    const { vm } = longMode('hlt');
    const plain = vm.addMemory({ guestAddress: 0x20_0000, size: 0x10000 });
    expect(() => vm.getDirtyLog(plain)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    vm.close();
  });
});
