// Guest debugging: single-stepping reports each instruction as a Debug exit; and the
// pause notification a VMM sends before suspending a vcpu.
import { describeKvm, longMode } from './helpers';

describeKvm('guest debug', () => {
  test('single-step stops after every instruction', () => {
    const { vm, vcpu } = longMode('regs'); // add; mov; lea; hlt
    vcpu.setGuestDebug({ singleStep: true });
    const pcs: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      const exit = vcpu.run();
      expect(exit.kind).toBe('Debug');
      if (exit.kind === 'Debug') {
        expect(exit.exception).toBe(1); // #DB
        pcs.push(exit.pc);
      }
    }
    expect(pcs).toEqual([0x1003n, 0x1008n, 0x100fn]);
    expect(vcpu.getRegs().rip).toBe(0x100fn);
    vcpu.setGuestDebug({ enable: false });
    expect(vcpu.run().kind).toBe('Hlt');
    vm.close();
  });

  test('onSuspend is harmless before the guest set up kvmclock', () => {
    const { vm, vcpu } = longMode('hlt');
    expect(() => vcpu.onSuspend()).not.toThrow();
    expect(vcpu.run().kind).toBe('Hlt');
    vm.close();
  });
});
