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

  test('other state round-trips', () => {
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
    vcpu.setVcpuEvents(events);
    const dregs = vcpu.getDebugRegs();
    expect(dregs.db).toHaveLength(4);
    vcpu.setDebugRegs(dregs);
    const xsave = vcpu.getXsave();
    expect(xsave.length).toBe(4096);
    vcpu.setXsave(xsave);
    const xcrs = vcpu.getXcrs();
    vcpu.setXcrs(xcrs);
    vcpu.setGuestDebug({ enable: false });
    vcpu.setCpuid(vm.createVcpu(1) && []); // an empty CPUID table is accepted by KVM
    vm.close();
  });

  test('the in-kernel irqchip gives a local APIC', () => {
    const { vm, vcpu } = longMode('hlt', { irqchip: true });
    const lapic = vcpu.getLapic();
    expect(lapic.regs.length).toBe(1024);
    vcpu.setLapic(lapic);
    vm.close();
  });
});
