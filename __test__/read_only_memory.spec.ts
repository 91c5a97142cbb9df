// A read-only slot: a guest write is an Mmio exit and the memory stays as it was.
import { describeKvm, longMode } from './helpers';

describeKvm('read-only memory', () => {
  test('a guest write exits as Mmio and leaves the memory unchanged', () => {
    const { vm, vcpu } = longMode('mem_access');
    const rom = vm.addMemory({ guestAddress: 0x200000, size: 0x1000, readonly: true });
    rom.bytes[0] = 0xaa;
    vcpu.setRegs({ rbx: 0x200000n });
    expect(vcpu.run().kind).toBe('Mmio');
    let write: [number, string, number] | undefined;
    vcpu.handleMmio((p) => (write = [p.address, p.operation, p.data[0]]));
    expect(write).toEqual([0x200000, 'write', 0x55]);
    // The read that follows comes from memory, which still holds 0xaa.
    expect(vcpu.run().kind).toBe('Hlt');
    expect(vcpu.getRegs().rax & 0xffn).toBe(0xaan);
    expect(rom.bytes[0]).toBe(0xaa);
    expect(vm.read(0x200000, 1)[0]).toBe(0xaa);
    vm.close();
  });
});
