// A removed slot: guest accesses become Mmio exits; views taken before stay valid.
import { VcpuError } from '../ts';
import { describeKvm, longMode } from './helpers';

describeKvm('removed memory', () => {
  test('guest accesses to a removed region exit as Mmio', () => {
    const { vm, vcpu } = longMode('mem_access');
    const mem = vm.addMemory({ guestAddress: 0x200000, size: 0x1000 });
    const bytes = mem.bytes;
    bytes[0] = 0x12;
    vm.removeMemory(mem);
    expect(mem.removed).toBe(true);
    // The view keeps the host mapping alive: no dangling pointer, the data is there.
    expect(bytes[0]).toBe(0x12);
    bytes[1] = 0x34;
    expect(() => vm.read(0x200000, 1)).toThrow(VcpuError);
    vcpu.setRegs({ rbx: 0x200000n });
    const accesses: [string, number, number][] = [];
    for (let i = 0; i < 2; i++) {
      expect(vcpu.run().kind).toBe('Mmio');
      vcpu.handleMmio((p) => {
        if (p.operation === 'read') p.data[0] = 0x77;
        accesses.push([p.operation, p.address, p.data[0]]);
      });
    }
    expect(vcpu.run().kind).toBe('Hlt');
    expect(accesses).toEqual([
      ['write', 0x200000, 0x55],
      ['read', 0x200000, 0x77],
    ]);
    expect(vcpu.getRegs().rax & 0xffn).toBe(0x77n);
    expect(() => vm.removeMemory(mem)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    vm.close();
  });

  test('a view taken before close stays usable after it', () => {
    const { vm } = longMode('hlt');
    const mem = vm.memory[0];
    const bytes = mem.bytes;
    vm.close();
    expect(bytes[0x1000]).toBe(0xf4); // the hlt the guest had there
    bytes[0] = 1;
    expect(() => vm.addMemory({ guestAddress: 0, size: 4096 })).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
  });
});
