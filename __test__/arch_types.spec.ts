// A vcpu has exactly its architecture's methods, at run time and in the types: on x86-64
// `vm.createVcpu()` is a VcpuX86_64 (crosvm's split of `Vcpu` and `VcpuX86_64`), with
// no arm64 method, and the arm64 ones are type errors.
import { Kvm, Vcpu, VcpuAArch64, VcpuX86_64 } from '../ts';
import { describeKvm } from './helpers';

describeKvm('arch-true vcpus', () => {
  test('an x86-64 vcpu is a Vcpu and a VcpuX86_64, with no arm64 method', () => {
    const vm = Kvm.open().createVm();
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    const vcpu = vm.createVcpu(0);
    expect(vcpu).toBeInstanceOf(Vcpu);
    expect(vcpu).toBeInstanceOf(VcpuX86_64);
    expect(vcpu).not.toBeInstanceOf(VcpuAArch64);
    for (const arm64 of ['setupEl1', 'getOneReg', 'setOneReg']) {
      expect([arm64, (vcpu as unknown as Record<string, unknown>)[arm64]]).toEqual([arm64, undefined]);
    }
    // Each of these lines must be a type error (ts-jest fails the file if one is not).
    const typeErrors = (v: Vcpu) => {
      // @ts-expect-error setupEl1 is arm64's
      v.setupEl1({ pc: 0 });
      // @ts-expect-error getOneReg is arm64's
      v.getOneReg(0n);
    };
    expect(typeof typeErrors).toBe('function');
    // The x86 methods are there, typed, on what createVcpu returns.
    vcpu.setupLongMode({ rip: 0x1000 });
    expect(vcpu.getRegs().rip).toBe(0x1000n);
    expect(typeof vcpu.getSregs().cr0).toBe('bigint');
    vm.close();
  });
});
