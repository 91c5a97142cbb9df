// Exits the guest causes itself: hlt and a triple fault.
import { describeKvm, longMode } from './helpers';

describeKvm('guest exits', () => {
  test('hlt exits to userspace as Hlt', () => {
    const { vm, vcpu } = longMode('hlt');
    expect(vcpu.run()).toEqual({ kind: 'Hlt' });
    expect(vcpu.getRegs().rip).toBe(0x1001n);
    vm.close();
  });

  test('a triple fault (ud2 with an empty IDT) is Shutdown', () => {
    const { vm, vcpu } = longMode('triple_fault');
    expect(vcpu.run()).toEqual({ kind: 'Shutdown' });
    vm.close();
  });
});
