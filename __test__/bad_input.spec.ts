// The bad-input matrix: every public method, fed what a careless or hostile caller
// might pass. Each call throws a VcpuError with a useful code, and the VM still works
// afterwards. docs/errors.md has this table in prose.
import { Kvm, Vm, VcpuSignalHandle, type Vcpu } from '../ts';
import { describeKvm, longMode } from './helpers';

type Case = [name: string, code: string, call: (ctx: { vm: Vm; vcpu: Vcpu }) => unknown];

const junk: unknown[] = [undefined, null, 'x', {}, [], -1, NaN, Infinity, 1.5, 2 ** 64, 10n];

const cases: Case[] = [
  // Kvm
  ['Kvm.open on a missing path', 'ENOENT', () => Kvm.open('/nonexistent/kvm')],
  ['Kvm.open on a non-KVM file', 'ENOTTY', () => Kvm.open('/dev/null')],
  ['checkExtension(-1)', 'EINVAL', () => Kvm.open().checkExtension(-1)],
  ['checkExtension("x")', 'EINVAL', () => Kvm.open().checkExtension('x' as unknown as number)],
  ['createVm({ hypercallPort: 70000 })', 'EINVAL', () => Kvm.open().createVm({ hypercallPort: 70000 })],
  ['createVm({ hypercallPort: -5 })', 'EINVAL', () => Kvm.open().createVm({ hypercallPort: -5 })],
  // memory
  ['addMemory unaligned address', 'EINVAL', ({ vm }) => vm.addMemory({ guestAddress: 0x1001 + 2 ** 30, size: 4096 })],
  ['addMemory unaligned size', 'EINVAL', ({ vm }) => vm.addMemory({ guestAddress: 2 ** 30, size: 4097 })],
  ['addMemory size 0', 'EINVAL', ({ vm }) => vm.addMemory({ guestAddress: 2 ** 30, size: 0 })],
  ['addMemory negative size', 'EINVAL', ({ vm }) => vm.addMemory({ guestAddress: 2 ** 30, size: -4096 })],
  ['addMemory NaN address', 'EINVAL', ({ vm }) => vm.addMemory({ guestAddress: NaN, size: 4096 })],
  ['addMemory past 52 bits', 'EINVAL', ({ vm }) => vm.addMemory({ guestAddress: 2 ** 52 - 4096, size: 8192 })],
  ['addMemory overlapping', 'EEXIST', ({ vm }) => vm.addMemory({ guestAddress: 0x1000, size: 4096 })],
  ['addMemory without options', 'EINVAL', ({ vm }) => vm.addMemory(undefined as never)],
  ['addMemory huge', 'ENOMEM', ({ vm }) => vm.addMemory({ guestAddress: 2 ** 40, size: 2 ** 50 })],
  ['read out of range', 'EFAULT', ({ vm }) => vm.read(2 << 20, 1)],
  ['read straddling the end', 'EFAULT', ({ vm }) => vm.read((2 << 20) - 2, 4)],
  ['read huge length', 'EFAULT', ({ vm }) => vm.read(0, 2 ** 40)],
  ['read negative address', 'EINVAL', ({ vm }) => vm.read(-1, 1)],
  ['write out of range', 'EFAULT', ({ vm }) => vm.write(2 ** 40, [1])],
  ['write a string', 'EINVAL', ({ vm }) => vm.write(0, 'abc' as unknown as number[])],
  ['removeMemory of a stranger', 'EINVAL', ({ vm }) => vm.removeMemory({} as never)],
  // vcpus
  ['createVcpu duplicate id', 'EEXIST', ({ vm }) => vm.createVcpu(0)],
  ['createVcpu huge id', 'EINVAL', ({ vm }) => vm.createVcpu(2 ** 31)],
  ['createVcpu fractional id', 'EINVAL', ({ vm }) => vm.createVcpu(1.5)],
  ['handleIo without an Io exit', 'EINVAL', ({ vcpu }) => vcpu.handleIo(() => {})],
  ['handleMmio without an Mmio exit', 'EINVAL', ({ vcpu }) => vcpu.handleMmio(() => {})],
  ['handleHypercall without a Hypercall exit', 'EINVAL', ({ vcpu }) => vcpu.handleHypercall(() => {})],
  ['setRegs with a negative bigint', 'EINVAL', ({ vcpu }) => vcpu.setRegs({ rip: -(2n ** 64n) })],
  ['setRegs with a 65-bit value', 'EINVAL', ({ vcpu }) => vcpu.setRegs({ rax: 2n ** 64n })],
  ['setRegs with a string', 'EINVAL', ({ vcpu }) => vcpu.setRegs({ rax: '1' as never })],
  ['setSregs with a bad segment', 'EINVAL', ({ vcpu }) => vcpu.setSregs({ cs: { ...vcpu.getSregs().cs, dpl: 7 } })],
  ['setFpu with short fpr', 'EINVAL', ({ vcpu }) => vcpu.setFpu({ ...vcpu.getFpu(), fpr: new Uint8Array(3) })],
  ['getMsrs of a missing MSR', 'EINVAL', ({ vcpu }) => vcpu.getMsrs([0xdeadbeef])],
  ['setMsrs with junk', 'EINVAL', ({ vcpu }) => vcpu.setMsrs([{ index: 0x10, data: 'x' as never }])],
  ['setXsave with 3 bytes', 'EINVAL', ({ vcpu }) => vcpu.setXsave(new Uint8Array(3))],
  ['setXcrs with too many', 'EINVAL', ({ vcpu }) => vcpu.setXcrs(Array(100).fill({ xcr: 0, value: 1n }))],
  [
    'setGuestDebug with 5 breakpoints',
    'EINVAL',
    ({ vcpu }) => vcpu.setGuestDebug({ enable: true, hardwareBreakpoints: [1n, 2n, 3n, 4n, 5n] }),
  ],
  ['interrupt(256)', 'EINVAL', ({ vcpu }) => vcpu.interrupt(256)],
  ['getLapic without an irqchip', 'EINVAL', ({ vcpu }) => vcpu.getLapic()],
  ['enableRawCapability with 3 args', 'EINVAL', ({ vcpu }) => vcpu.enableRawCapability(1, [1n, 2n, 3n] as never)],
  ['enableRawCapability of nothing', 'EINVAL', ({ vcpu }) => vcpu.enableRawCapability(0xffff, [0n, 0n, 0n, 0n])],
  ['Vm.fromHandle of nothing', 'ECLOSED', () => Vm.fromHandle({ id: 987654 })],
  // strict inputs: unknown keys, non-objects, non-functions
  ['setRegs({ rpi })', 'EINVAL', ({ vcpu }) => vcpu.setRegs({ rpi: 5n } as never)],
  ['setRegs("junk")', 'EINVAL', ({ vcpu }) => vcpu.setRegs('junk' as never)],
  ['setRegs(null)', 'EINVAL', ({ vcpu }) => vcpu.setRegs(null as never)],
  ['setSregs({ csx })', 'EINVAL', ({ vcpu }) => vcpu.setSregs({ csx: {} } as never)],
  ['setSregs({ cs: { bse } })', 'EINVAL', ({ vcpu }) => vcpu.setSregs({ cs: { bse: 0n } } as never)],
  ['setSregs(null)', 'EINVAL', ({ vcpu }) => vcpu.setSregs(null as never)],
  ['setFpu({ mxscr })', 'EINVAL', ({ vcpu }) => vcpu.setFpu({ mxscr: 0 } as never)],
  ['setDebugRegs({ dr8 })', 'EINVAL', ({ vcpu }) => vcpu.setDebugRegs({ dr8: 0n } as never)],
  ['setVcpuEvents({ nmi: { maskd } })', 'EINVAL', ({ vcpu }) => vcpu.setVcpuEvents({ nmi: { maskd: 1 } } as never)],
  ['setGuestDebug({ singlestep })', 'EINVAL', ({ vcpu }) => vcpu.setGuestDebug({ singlestep: true } as never)],
  ['setupLongMode({ rpi })', 'EINVAL', ({ vcpu }) => vcpu.setupLongMode({ rpi: 0 } as never)],
  ['createVm({ irqchp })', 'EINVAL', () => Kvm.open().createVm({ irqchp: true } as never)],
  ['createVm(5)', 'EINVAL', () => Kvm.open().createVm(5 as never)],
  [
    'addMemory({ readOnly })',
    'EINVAL',
    ({ vm }) => vm.addMemory({ guestAddress: 2 ** 30, size: 4096, readOnly: true } as never),
  ],
  ['runUntil({ io: 5 })', 'EINVAL', ({ vcpu }) => vcpu.runUntil({ io: 5 } as never)],
  ['runUntil({ ioo })', 'EINVAL', ({ vcpu }) => vcpu.runUntil({ ioo: () => {} } as never)],
  ['runUntil(5)', 'EINVAL', ({ vcpu }) => vcpu.runUntil(5 as never)],
  ['runAsync({ mmio: "x" })', 'EINVAL', ({ vcpu }) => vcpu.runAsync({ mmio: 'x' } as never)],
  ['handleIo(5)', 'EINVAL', ({ vcpu }) => vcpu.handleIo(5 as never)],
  ['handleMsr without an MsrAccess exit', 'EINVAL', ({ vcpu }) => vcpu.handleMsr(() => {})],
];

describeKvm('bad input', () => {
  test.each(cases)('%s → %s', (_name, code, call) => {
    const { vm, vcpu } = longMode('hlt');
    let err: unknown;
    try {
      call({ vm, vcpu });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ name: 'VcpuError', code });
    expect((err as Error).message.length).toBeGreaterThan(10);
    // Nothing was lost: the VM and the vcpu still work.
    expect(vcpu.run()).toEqual({ kind: 'Hlt' });
    vm.write(0x100, [1, 2, 3]);
    expect([...vm.read(0x100, 3)]).toEqual([1, 2, 3]);
    vm.close();
  });

  test('junk of every type into numeric arguments is EINVAL', () => {
    const { vm, vcpu } = longMode('hlt');
    for (const j of junk) {
      for (const call of [
        () => vm.read(j as number, 1),
        () => vm.write(j as number, [1]),
        () => vm.createVcpu(j as number),
        () => vcpu.interrupt(j as number),
        () => vcpu.setMpState(j as number),
      ]) {
        expect(call).toThrow(expect.objectContaining({ name: 'VcpuError', code: 'EINVAL' }));
      }
    }
    expect(vcpu.run()).toEqual({ kind: 'Hlt' });
    vm.close();
  });

  test('unknown keys change nothing: the registers are as they were', () => {
    const { vm, vcpu } = longMode('hlt');
    const before = vcpu.getRegs();
    expect(() => vcpu.setRegs({ rax: 7n, rpi: 5n } as never)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining("'rpi'") }),
    );
    expect(vcpu.getRegs()).toEqual(before);
    vm.close();
  });

  test("run() and runUntil() inside the vcpu's own handler throw EBUSY; the vcpu goes on", () => {
    const { vm, vcpu } = longMode('pio_out');
    const inside: unknown[] = [];
    const exit = vcpu.runUntil({
      io: () => {
        for (const call of [() => vcpu.run(), () => vcpu.runUntil({}), () => vcpu.handleIo(() => {})]) {
          try {
            call();
          } catch (e) {
            inside.push((e as { code: string }).code);
          }
        }
      },
    });
    expect(inside.slice(0, 3)).toEqual(['EBUSY', 'EBUSY', 'EINVAL']);
    expect(exit.kind).toBe('Hlt');
    vm.close();
  });

  test('handlers that throw or return junk, and calls after close', () => {
    const { vm, vcpu } = longMode('pio_out');
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo(() => 42 as never); // a return value is ignored
    expect(vcpu.run().kind).toBe('Io');
    expect(() =>
      vcpu.handleIo((p) => {
        (p as { data: Uint8Array }).data = new Uint8Array(100); // replacing data changes nothing
        throw new TypeError('junk');
      }),
    ).toThrow(TypeError);
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo(() => {});
    expect(vcpu.run().kind).toBe('Hlt');
    const handle = vcpu.signalHandle();
    vm.close();
    for (const call of [
      () => vcpu.run(),
      () => vcpu.getRegs(),
      () => vcpu.setRegs({ rax: 1n }),
      () => vcpu.runUntil({}),
      () => vcpu.handleIo(() => {}),
      () => vcpu.setImmediateExit(true),
      () => vm.addMemory({ guestAddress: 0, size: 4096 }),
      () => vm.read(0, 1),
      () => vm.write(0, [1]),
      () => vm.createVcpu(3),
      () => vm.handle,
    ]) {
      expect(call).toThrow(expect.objectContaining({ name: 'VcpuError', code: 'ECLOSED' }));
    }
    expect(handle.signalImmediateExit()).toBe(false);
    expect(VcpuSignalHandle.from({ id: -1 }).signalImmediateExit()).toBe(false);
  });
});
