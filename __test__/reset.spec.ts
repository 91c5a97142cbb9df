// Reset in place: a VM goes back to its reset point, memory, devices and registers,
// with only the pages written since put back, and runs as new.
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Kvm, VcpuError } from '../ts';
import { describeKvm, longMode } from './helpers';

describeKvm('vm.reset()', () => {
  test('a guest that wrote 1000 pages has none of those writes after reset, and runs as new', () => {
    const { vm, vcpu } = longMode('write_pages');
    vm.addMemory({ guestAddress: 0x200000, size: 4 << 20 });
    vm.write(0x200000 + 8, [7]); // the host's, before the mark: kept
    vm.markResetPoint();
    expect(vm.hasResetPoint).toBe(true);
    const rip = vcpu.getRegs().rip;
    const page = (n: number) => Buffer.from(vm.read(0x200000 + n * 4096, 4)).readUInt32LE();
    for (let round = 0; round < 3; round++) {
      expect(vcpu.run().kind).toBe('Io');
      vcpu.handleIo(() => {});
      expect([page(0), page(999)]).toEqual([0xdeadbeef, 0xdeadbeef]);
      vm.reset();
      expect([page(0), page(500), page(999)]).toEqual([0, 0, 0]);
      expect(vm.read(0x200000 + 8, 1)[0]).toBe(7);
      expect(vcpu.getRegs().rip).toBe(rip);
    }
    vm.close();
  });

  test('a VM without a reset point refuses; a restored one resets to its snapshot', () => {
    const { vm, vcpu } = longMode('counter');
    expect(vm.hasResetPoint).toBe(false);
    let code: string | undefined;
    try {
      vm.reset();
    } catch (e) {
      code = (e as VcpuError).code;
    }
    expect(code).toBe('EINVAL');
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo(() => {});
    const path = join(tmpdir(), `vcpu-reset-${process.pid}.snap`);
    vm.snapshot(path);
    vm.close();
    const restored = Kvm.open().restoreVm(path);
    expect(restored.hasResetPoint).toBe(true);
    const v = restored.createVcpu(0);
    const count = () => {
      expect(v.run().kind).toBe('Io');
      let n = -1;
      v.handleIo((p) => (n = Buffer.from(p.data).readUInt32LE()));
      return n;
    };
    expect([count(), count(), count()]).toEqual([2, 3, 4]);
    restored.reset();
    expect([count(), count()]).toEqual([2, 3]);
    restored.close();
    rmSync(path);
  });
});
