// runAsync: the vcpu on a native thread, exits handled on the JS thread, the event loop
// free meanwhile.
import { describeKvm, helloDevice, longMode } from './helpers';

describeKvm('runAsync', () => {
  test('handles I/O and hypercalls and resolves to the final exit', async () => {
    const { vm, vcpu } = longMode('hello');
    const device = helloDevice();
    const exit = await vcpu.runAsync({
      io: device.io,
      hypercall: (abi) => abi.setResults([abi.getArgument(1)! * 100n + (3n << 32n)]),
    });
    expect(exit).toEqual({ kind: 'Hlt' });
    expect(device.text()).toBe('Hello from a 64-bit guest on /dev/kvm!\n');
    expect(device.answer()).toBe(800n + (3n << 32n)); // as the guest reports it
    vm.close();
  });

  test('a read waits for the handler and gets its data', async () => {
    const { vm, vcpu } = longMode('pio_in');
    const exit = await vcpu.runAsync({ io: (p) => p.data.fill(p.address) });
    expect(exit.kind).toBe('Hlt');
    const regs = vcpu.getRegs();
    expect([regs.rbx, regs.rcx, regs.rdx]).toEqual([0x20n, 0x2222n, 0x24242424n]);
    vm.close();
  });

  test('the event loop keeps running while the guest spins, and a kick stops it', async () => {
    const { vm, vcpu } = longMode('spin');
    const done = vcpu.runAsync({});
    expect(vcpu.running).toBe(true);
    expect(() => vcpu.getRegs()).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(() => vcpu.run()).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    await new Promise((r) => setTimeout(r, 200));
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(10);
    vcpu.signalHandle().signalImmediateExit();
    expect(await done).toEqual({ kind: 'Intr' });
    expect(vcpu.running).toBe(false);
    expect(vcpu.getRegs().rip).toBe(0x1000n);
    vm.close();
  });

  test('inside a handler the vcpu state is readable, but running it is EBUSY', async () => {
    const { vm, vcpu } = longMode('pio_in');
    const seen: unknown[] = [];
    const exit = await vcpu.runAsync({
      io: (p) => {
        seen.push(vcpu.getRegs().rip > 0x1000n);
        try {
          vcpu.run();
        } catch (e) {
          seen.push((e as { code: string }).code);
        }
        p.data.fill(1);
      },
    });
    expect(exit.kind).toBe('Hlt');
    expect(seen.slice(0, 2)).toEqual([true, 'EBUSY']);
    vm.close();
  });

  test('a handler that throws rejects with its error; the vcpu stays usable', async () => {
    const { vm, vcpu } = longMode('pio_out');
    const boom = new Error('boom');
    await expect(
      vcpu.runAsync({
        io: () => {
          throw boom;
        },
      }),
    ).rejects.toBe(boom);
    expect(vcpu.run().kind).toBe('Io'); // the next out
    vm.close();
  });

  test('closing the VM resolves a running vcpu with Intr', async () => {
    const { vm, vcpu } = longMode('spin');
    const done = vcpu.runAsync({});
    await new Promise((r) => setTimeout(r, 20));
    vm.close();
    expect(await done).toEqual({ kind: 'Intr' });
  });
});
