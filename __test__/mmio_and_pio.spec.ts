// Port I/O and MMIO at every width, and string I/O: the bytes the guest wrote, the
// registers it loaded with what the handler returned.
import { describeKvm, longMode } from './helpers';

describeKvm('port I/O', () => {
  test('out at sizes 1, 2, 4', () => {
    const { vm, vcpu } = longMode('pio_out');
    const seen: [number, number, string, number[]][] = [];
    for (let i = 0; i < 3; i++) {
      expect(vcpu.run()).toEqual({ kind: 'Io' });
      vcpu.handleIo((p) => seen.push([p.address, p.size, p.operation, [...p.data]]));
    }
    expect(vcpu.run().kind).toBe('Hlt');
    expect(seen).toEqual([
      [0x10, 1, 'write', [0x11]],
      [0x12, 2, 'write', [0x22, 0x22]],
      [0x14, 4, 'write', [0x44, 0x44, 0x44, 0x44]],
    ]);
    vm.close();
  });

  test('in at sizes 1, 2, 4 fills the guest registers', () => {
    const { vm, vcpu } = longMode('pio_in');
    const sizes: number[] = [];
    for (let i = 0; i < 3; i++) {
      expect(vcpu.run().kind).toBe('Io');
      vcpu.handleIo((p) => {
        expect(p.operation).toBe('read');
        expect(p.data.length).toBe(p.size);
        sizes.push(p.size);
        p.data.fill(p.address); // 0x20, 0x22, 0x24
      });
    }
    expect(vcpu.run().kind).toBe('Hlt');
    expect(sizes).toEqual([1, 2, 4]);
    const regs = vcpu.getRegs();
    expect([regs.rbx, regs.rcx, regs.rdx]).toEqual([0x20n, 0x2222n, 0x24242424n]);
    vm.close();
  });

  test('a read the handler leaves alone returns zero', () => {
    const { vm, vcpu } = longMode('pio_in');
    // The first read is filled; the next two, whose data lies where the first one's
    // did, are left alone and must read zero, not what the first handler wrote.
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo((p) => p.data.fill(0xab));
    for (let i = 0; i < 2; i++) {
      expect(vcpu.run().kind).toBe('Io');
      vcpu.handleIo(() => {});
    }
    expect(vcpu.run().kind).toBe('Hlt');
    const regs = vcpu.getRegs();
    expect([regs.rbx, regs.rcx, regs.rdx]).toEqual([0xabn, 0n, 0n]);
    vm.close();
  });

  test('string I/O (rep outsb, rep insb) calls the handler once per element, in order', () => {
    const { vm, vcpu } = longMode('string_io');
    vm.write(0x2000, Buffer.from('abcd'));
    const out: number[] = [];
    let next = 'w'.charCodeAt(0);
    // Hardware KVM reports each rep as one exit with count 4; an emulating KVM may
    // report one exit per element. Either way the handler sees one call per element.
    for (;;) {
      const exit = vcpu.run();
      if (exit.kind === 'Hlt') break;
      expect(exit.kind).toBe('Io');
      vcpu.handleIo((p) => {
        expect(p.size).toBe(1);
        if (p.operation === 'write') {
          expect(p.address).toBe(0x30);
          out.push(p.data[0]);
        } else {
          expect(p.address).toBe(0x31);
          p.data[0] = next++;
        }
      });
    }
    expect(Buffer.from(out).toString()).toBe('abcd');
    expect(Buffer.from(vm.read(0x3000, 4)).toString()).toBe('wxyz');
    vm.close();
  });
});

describeKvm('MMIO', () => {
  test('writes and reads at sizes 1, 2, 4, 8', () => {
    const { vm, vcpu } = longMode('mmio');
    const writes: [number, number[]][] = [];
    for (let i = 0; i < 4; i++) {
      expect(vcpu.run().kind).toBe('Mmio');
      vcpu.handleMmio((p) => {
        expect(p.operation).toBe('write');
        writes.push([p.address, [...p.data]]);
      });
    }
    expect(writes).toEqual([
      [0x30000000, [0x11]],
      [0x30000008, [0x22, 0x22]],
      [0x30000010, [0x44, 0x44, 0x44, 0x44]],
      [0x30000018, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]],
    ]);
    const reads: [number, number][] = [];
    for (let i = 0; i < 4; i++) {
      expect(vcpu.run().kind).toBe('Mmio');
      vcpu.handleMmio((p) => {
        expect(p.operation).toBe('read');
        reads.push([p.address, p.size]);
        p.data.forEach((_, j) => (p.data[j] = 0xa0 + j));
      });
    }
    expect(vcpu.run().kind).toBe('Hlt');
    expect(reads).toEqual([
      [0x30000020, 1],
      [0x30000028, 2],
      [0x30000030, 4],
      [0x30000038, 8],
    ]);
    const regs = vcpu.getRegs();
    expect(regs.rcx).toBe(0xa0n);
    expect(regs.rdx).toBe(0xa1a0n);
    expect(regs.rsi).toBe(0xa3a2a1a0n);
    expect(regs.rdi).toBe(0xa7a6a5a4a3a2a1a0n);
    vm.close();
  });
});
