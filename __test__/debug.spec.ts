// Guest debugging: single-stepping reports each instruction as a Debug exit; and the
// pause notification a VMM sends before suspending a vcpu (kvmclock's "guest stopped").
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

  test('onSuspend tells a guest with kvmclock it was stopped, and is harmless before', () => {
    const { vm, vcpu } = longMode('hlt');
    vm.write(0x1000, [0xf4, 0xeb, 0xfd]); // hlt; jmp back to it
    vcpu.onSuspend(); // no kvmclock yet: nothing to tell
    // kvmclock at 0x6000 (MSR_KVM_SYSTEM_TIME_NEW, enable bit), as a guest kernel sets it.
    const PVCLOCK = 0x6000;
    vcpu.setMsrs([{ index: 0x4b564d01, data: BigInt(PVCLOCK) | 1n }]);
    // struct pvclock_vcpu_time_info: version at 0, flags at 29; PVCLOCK_GUEST_STOPPED = 2.
    const flags = () => vm.read(PVCLOCK + 29, 1)[0];
    expect(vcpu.run().kind).toBe('Hlt');
    expect(Buffer.from(vm.read(PVCLOCK, 4)).readUInt32LE()).toBeGreaterThan(0); // KVM wrote it
    expect(flags() & 2).toBe(0);
    vcpu.onSuspend();
    expect(vcpu.run().kind).toBe('Hlt');
    expect(flags() & 2).toBe(2); // the guest's watchdogs can see it was paused
    vm.close();
  });
});
