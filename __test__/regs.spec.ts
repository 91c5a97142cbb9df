// Registers set from JS are seen by the guest, and the other way round.
import { describeKvm, longMode } from './helpers';

describeKvm('registers', () => {
  test('round trip through the guest', () => {
    const { vm, vcpu } = longMode('regs');
    vcpu.setRegs({ ...vcpu.getRegs(), rax: 40n, rbx: 2n });
    expect(vcpu.run().kind).toBe('Hlt');
    const regs = vcpu.getRegs();
    expect(regs.rax).toBe(42n);
    expect(regs.rcx).toBe(0xc0ffeen);
    expect(regs.rdx).toBe(regs.rip - 1n); // rip is past the hlt
    vm.close();
  });

  test('long mode state is visible in the special registers', () => {
    const { vm, vcpu } = longMode('hlt');
    const sregs = vcpu.getSregs();
    expect(sregs.cs.l).toBe(1);
    expect(sregs.cs.selector).toBe(8);
    expect(sregs.efer & (1n << 10n)).not.toBe(0n); // LMA
    expect(sregs.cr3).toBe(0x9000n);
    expect(sregs.interruptBitmap).toHaveLength(4);
    vcpu.setSregs(sregs);
    expect(vcpu.getSregs()).toEqual(sregs);
    vm.close();
  });

  test('other state round-trips with the values set', () => {
    const { vm, vcpu } = longMode('hlt');
    const fpu = vcpu.getFpu();
    fpu.xmm[0] = 0x5a;
    vcpu.setFpu(fpu);
    expect(vcpu.getFpu().xmm[0]).toBe(0x5a);
    const [tsc] = vcpu.getMsrs([0x10]);
    expect(tsc.index).toBe(0x10);
    vcpu.setMsrs([{ index: 0xc0000102, data: 0x1234n }]); // KERNEL_GS_BASE
    expect(vcpu.getMsrs([0xc0000102])[0].data).toBe(0x1234n);
    expect(vcpu.getMpState()).toBe(0);
    const events = vcpu.getVcpuEvents();
    expect(events.nmi.masked).toBe(0);
    vcpu.setVcpuEvents({ ...events, nmi: { ...events.nmi, masked: 1 } });
    expect(vcpu.getVcpuEvents().nmi.masked).toBe(1);
    const dregs = vcpu.getDebugRegs();
    expect(dregs.db).toHaveLength(4);
    vcpu.setDebugRegs({ ...dregs, db: [0x1000n, 0x2000n, 0x3000n, 0x4000n] });
    expect(vcpu.getDebugRegs().db).toEqual([0x1000n, 0x2000n, 0x3000n, 0x4000n]);
    const xsave = vcpu.getXsave();
    expect(xsave.length).toBe(4096);
    // MXCSR sits at byte 24 of the legacy area: flush-to-zero on (bit 15); the header's
    // XSTATE_BV (byte 512) must mark the SSE state (bit 1) present for it to load.
    const mxcsr = Buffer.from(xsave).readUInt32LE(24);
    const area = Buffer.from(xsave.buffer, xsave.byteOffset, xsave.length);
    area.writeUInt32LE(mxcsr | 0x8000, 24);
    area[512] |= 2;
    vcpu.setXsave(xsave);
    expect(Buffer.from(vcpu.getXsave()).readUInt32LE(24)).toBe(mxcsr | 0x8000);
    const xcr0 = vcpu.getXcrs().find((x) => x.xcr === 0)!;
    expect(xcr0.value & 1n).toBe(1n); // x87 state is always on
    vcpu.setXcrs([{ xcr: 0, value: 3n }]); // x87 and SSE only
    expect(vcpu.getXcrs().find((x) => x.xcr === 0)!.value).toBe(3n);
    vcpu.setGuestDebug({ enable: false });
    // The guest still runs as before with all of it.
    expect(vcpu.run().kind).toBe('Hlt');
    vm.close();
  });

  test('the in-kernel irqchip gives a local APIC', () => {
    const { vm, vcpu } = longMode('hlt', { irqchip: true });
    const lapic = vcpu.getLapic();
    expect(lapic.regs.length).toBe(1024);
    expect(lapic.regs[0x23]).toBe(0); // APIC ID register (bits 31:24): vcpu 0
    lapic.regs[0x80] = 0x20; // task priority
    vcpu.setLapic(lapic);
    expect(vcpu.getLapic().regs[0x80]).toBe(0x20);
    vm.close();
  });
});
