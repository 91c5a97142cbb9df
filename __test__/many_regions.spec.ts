// Many memory regions: each is a window into the VM's one memory file, so adding
// thousands costs one file descriptor, and KVM's limit is reported as ENOSPC.
import { readdirSync } from 'node:fs';

import { describeKvm } from './helpers';
import { Kvm } from '../ts';

const openFds = () => readdirSync('/proc/self/fd').length;

describeKvm('many memory regions', () => {
  test('2000 regions hold one descriptor; each keeps its own bytes', () => {
    const vm = Kvm.open().createVm();
    const before = openFds();
    const regions = [];
    for (let i = 0; i < 2000; i++)
      regions.push(vm.addMemory({ guestAddress: 0x1_0000_0000 + i * 0x2000, size: 0x1000 }));
    expect(openFds()).toBe(before + 1);
    for (let i = 0; i < 2000; i += 499) vm.write(0x1_0000_0000 + i * 0x2000, new Uint8Array([i & 0xff, i >> 8]));
    for (let i = 0; i < 2000; i += 499) {
      expect([...vm.read(0x1_0000_0000 + i * 0x2000, 2)]).toEqual([i & 0xff, i >> 8]);
      expect([...regions[i].bytes.subarray(0, 2)]).toEqual([i & 0xff, i >> 8]);
    }
    vm.removeMemory(regions[3]);
    const again = vm.addMemory({ guestAddress: 0x1_0000_6000, size: 0x1000 });
    expect(again.slot).toBe(regions[3].slot);
    expect(again.bytes[0]).toBe(0); // fresh memory, not the removed region's
    vm.close();
  });

  test("one region past KVM's maximum is refused with ENOSPC", () => {
    const kvm = Kvm.open();
    const max = kvm.checkExtension(10); // KVM_CAP_NR_MEMSLOTS
    const vm = kvm.createVm();
    for (let i = 0; i < max; i++) vm.addMemory({ guestAddress: 0x1_0000_0000 + i * 0x2000, size: 0x1000 });
    expect(() => vm.addMemory({ guestAddress: 0x1_0000_0000 + max * 0x2000, size: 0x1000 })).toThrow(
      expect.objectContaining({ code: 'ENOSPC', op: 'addMemory' }),
    );
    vm.close();
  });
});
