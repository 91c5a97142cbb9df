// Stopping a guest that spins forever: setImmediateExit and the signal handle.
import { VcpuSignalHandle } from '../ts';
import { describeKvm, longMode, watchdog } from './helpers';

describeKvm('immediate exit', () => {
  test('setImmediateExit(true) makes run() return Intr until cleared', () => {
    const { vm, vcpu } = longMode('hlt');
    vcpu.setImmediateExit(true);
    expect(vcpu.run()).toEqual({ kind: 'Intr' });
    expect(vcpu.run()).toEqual({ kind: 'Intr' });
    vcpu.setImmediateExit(false);
    expect(vcpu.run()).toEqual({ kind: 'Hlt' });
    vm.close();
  });

  test('a signal handle stops a spinning guest from another thread', async () => {
    const { vm, vcpu } = longMode('spin');
    const dog = await watchdog(vcpu, 50);
    const started = Date.now();
    expect(vcpu.run()).toEqual({ kind: 'Intr' });
    expect(dog.kicked()).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
    await dog.stop();
    // The kick was consumed: the guest runs again and spins until the next kick.
    expect(vcpu.getRegs().rip).toBe(0x1000n);
    const again = await watchdog(vcpu, 50);
    expect(vcpu.run()).toEqual({ kind: 'Intr' });
    await again.stop();
    vm.close();
  });

  test('a signal sent before run() makes that run return Intr', () => {
    const { vm, vcpu } = longMode('spin');
    const handle = vcpu.signalHandle();
    expect(VcpuSignalHandle.from(JSON.parse(JSON.stringify(handle))).signalImmediateExit()).toBe(true);
    expect(vcpu.run()).toEqual({ kind: 'Intr' });
    vcpu.close();
    expect(handle.signalImmediateExit()).toBe(false);
    vm.close();
  });
});
