// The crosvm `Vm` device surface on a real guest: ioevents count writes that never
// leave the kernel (ports and MMIO, with and without a datamatch), an irqfd and an irq
// line each deliver an interrupt through the in-kernel IOAPIC.
import { Kvm, VcpuError } from '../ts';
import { describeKvm, guest } from './helpers';

/** A VM with the in-kernel irqchip running guests/ioevent_irq.asm. */
function machine() {
  const vm = Kvm.open().createVm({ irqchip: true });
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(0x1000, guest('ioevent_irq'));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
  return { vm, vcpu };
}

/** Runs to the next port write and returns its port (handling it). */
function nextPort(vcpu: ReturnType<typeof machine>['vcpu'], mmio: number[] = []): number {
  for (;;) {
    const exit = vcpu.runUntil({ mmio: (p) => mmio.push(Buffer.from(p.data).readUInt32LE()) });
    if (exit.kind !== 'Io') throw new Error(`unexpected ${exit.kind}`);
    let port = -1;
    vcpu.handleIo((p) => (port = p.address));
    return port;
  }
}

describeKvm('ioevents, irqfds and irq lines', () => {
  test('matching writes complete in the kernel and are counted; others still exit', async () => {
    const { vm, vcpu } = machine();
    const doorbell = vm.registerIoevent({ address: 0x700, length: 1, port: true });
    const mmio = vm.registerIoevent({ address: 0xd000_0000, length: 4, datamatch: 0x1234n });
    const seen: number[] = [];
    expect(nextPort(vcpu, seen)).toBe(0x601); // the first exit is the guest's "ready"
    expect(seen).toEqual([0x9999]); // the one write no datamatch matched
    expect(await doorbell.wait()).toBe(3);
    expect(mmio.count()).toBe(2);
    expect(mmio.count()).toBe(0);
    doorbell.close();
    await expect(doorbell.wait()).rejects.toMatchObject({ name: 'VcpuError', code: 'ECLOSED' });
    vm.close();
  });

  test('an irqfd and an irq line each raise GSI 10, which the guest takes', () => {
    const { vm, vcpu } = machine();
    vm.registerIoevent({ address: 0x700, length: 1, port: true });
    vm.registerIoevent({ address: 0xd000_0000, length: 4, datamatch: 0x1234n });
    expect(nextPort(vcpu)).toBe(0x601);
    const irq = vm.registerIrqfd(10);
    irq.trigger();
    expect(nextPort(vcpu)).toBe(0x600); // the handler ran
    expect(nextPort(vcpu)).toBe(0x601);
    vm.setIrqLine(10, true);
    vm.setIrqLine(10, false);
    expect(nextPort(vcpu)).toBe(0x600);
    irq.close();
    vm.close();
  });

  test('bad arguments are VcpuErrors; without an irqchip, irqfds are refused', () => {
    const { vm } = machine();
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof VcpuError ? e.code : 'not a VcpuError';
      }
      return 'no error';
    };
    expect(code(() => vm.registerIoevent({ address: 0x700, length: 3 as never, port: true }))).toBe('EINVAL');
    expect(code(() => vm.registerIoevent({ address: 0x700, length: 1, datamatch: 0x100n, port: true }))).toBe('EINVAL');
    expect(code(() => vm.registerIoevent({ address: 0x1_0000, length: 1, port: true }))).toBe('EINVAL');
    vm.registerIoevent({ address: 0x702, length: 2, port: true });
    expect(code(() => vm.registerIoevent({ address: 0x702, length: 2, port: true }))).toBe('EEXIST');
    vm.close();
    const plain = Kvm.open().createVm();
    expect(code(() => plain.registerIrqfd(10))).toBe('EINVAL');
    expect(code(() => plain.setIrqLine(10, true))).not.toBe('no error');
    plain.close();
  });
});
