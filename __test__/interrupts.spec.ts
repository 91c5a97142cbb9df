// Interrupts without the in-kernel irqchip, as crosvm's VcpuX86_64: readiness, the
// interrupt window, and injection refused while the guest cannot take it.
import { describeKvm, longMode } from './helpers';
import type { Vcpu } from '../ts';

/** The next exit, which must be an Io write; its port and byte. */
function nextWrite(vcpu: Vcpu): [number, number] {
  const exit = vcpu.run();
  if (exit.kind !== 'Io') throw new Error(`expected Io, got ${exit.kind}`);
  let seen: [number, number] = [0, 0];
  vcpu.handleIo((p) => {
    seen = [p.address, p.data[0]];
  });
  return seen;
}

describeKvm('interrupts (no irqchip)', () => {
  test('inside cli the guest is not ready and interrupt() throws EAGAIN; the window opens after sti', () => {
    const { vm, vcpu } = longMode('irq_window');
    expect(nextWrite(vcpu)).toEqual([0x10, 1]); // inside the cli section
    expect(vcpu.readyForInterrupt()).toBe(false);
    expect(() => vcpu.interrupt(0x40)).toThrow(expect.objectContaining({ code: 'EAGAIN', op: 'interrupt' }));
    vcpu.setInterruptWindowRequested(true);
    // Still inside cli: the window stays shut.
    expect(nextWrite(vcpu)).toEqual([0x10, 3]);
    expect(vcpu.readyForInterrupt()).toBe(false);
    // After sti the window opens: hardware KVM exits with IrqWindowOpen right after
    // `sti; nop`. A KVM whose emulator runs the guest's kernel code (this project's CI
    // host) never delivers that exit: the guest runs on to its `hlt`. Either way the
    // guest is ready only now, and the interrupt is taken only now.
    const after: [number, number][] = [];
    let exit = vcpu.run();
    while (exit.kind === 'Io') {
      vcpu.handleIo((p) => after.push([p.address, p.data[0]]));
      exit = vcpu.run();
    }
    expect(['IrqWindowOpen', 'Hlt']).toContain(exit.kind);
    expect(after).toEqual(exit.kind === 'IrqWindowOpen' ? [] : [[0x10, 2]]);
    expect(vcpu.readyForInterrupt()).toBe(true);
    vcpu.setInterruptWindowRequested(false);
    vcpu.interrupt(0x40);
    expect(nextWrite(vcpu)).toEqual([0x600, 0x40]);
    if (exit.kind === 'IrqWindowOpen') expect(nextWrite(vcpu)).toEqual([0x10, 2]);
    vm.close();
  });

  test('without a window request the guest runs through sti to its next exit', () => {
    const { vm, vcpu } = longMode('irq_window');
    expect(nextWrite(vcpu)).toEqual([0x10, 1]);
    expect(nextWrite(vcpu)).toEqual([0x10, 3]);
    expect(nextWrite(vcpu)).toEqual([0x10, 2]); // no interrupt was ever taken
    expect(vcpu.readyForInterrupt()).toBe(true);
    vm.close();
  });
});
