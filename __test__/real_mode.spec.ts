// A 16-bit real-mode guest (KVM's reset state, with CS moved to 0).
import { Kvm } from '../ts';
import { describeKvm, guest, LOAD_ADDR } from './helpers';

describeKvm('real mode', () => {
  test('port I/O and a memory write from 16-bit code', () => {
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 0x10000 });
    vm.write(LOAD_ADDR, guest('real_mode'));
    const vcpu = vm.createVcpu(0);
    const sregs = vcpu.getSregs();
    vcpu.setSregs({ cs: { ...sregs.cs, base: 0n, selector: 0 } });
    vcpu.setRegs({ rip: BigInt(LOAD_ADDR), rflags: 2n });
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo((p) => expect([p.address, p.operation, p.data[0]]).toEqual([0x10, 'write', 0x42]));
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo((p) => (p.data[0] = 0x60));
    expect(vcpu.run().kind).toBe('Hlt');
    expect(vm.read(0x2000, 1)[0]).toBe(0x61);
    vm.close();
  });
});
