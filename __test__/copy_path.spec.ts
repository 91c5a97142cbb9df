// The path Electron takes: no external ArrayBuffers (V8 memory cage), so exit data is
// copied through a scratch buffer and `bytes` says to use vm.read()/vm.write().
// VCPU_NO_EXTERNAL_BUFFERS=1 makes plain Node take it.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { describeKvm } from './helpers';

const PKG = join(__dirname, '..', 'dist');
const BOOT = join(__dirname, 'boot.js');

describeKvm('copy path (Electron)', () => {
  test('every exit kind works without external buffers', () => {
    const script = `
      const { Kvm } = require(${JSON.stringify(PKG)});
      const { longMode } = require(${JSON.stringify(BOOT)});
      const boot = (name) => longMode(Kvm, name);
      const out = {};
      { // port in through run() + handleIo
        const { vm, vcpu } = boot('pio_in');
        for (let i = 0; i < 3; i++) { vcpu.run(); vcpu.handleIo((p) => p.data.fill(p.address)); }
        out.pioIn = [vcpu.run().kind, vcpu.getRegs().rdx.toString(16)];
        try { vm.memory[0].bytes; } catch (e) { out.bytes = e.code; }
        try { vcpu.handleIo(() => {}); } catch (e) { out.noExit = [e.name, e.code, e.op]; }
        vm.close();
        try { vcpu.handleIo(() => {}); } catch (e) { out.closed = [e.name, e.code]; }
      }
      { // string I/O and a hypercall through runUntil
        const { vm, vcpu } = boot('hello');
        let text = '';
        let answer = 0n; // the guest reports the hypercall's result on port 0x3f9, low dword first
        let shift = 0n;
        const exit = vcpu.runUntil({
          io: (p) => {
            if (p.address === 0x3f8) text += String.fromCharCode(p.data[0]);
            if (p.address === 0x3f9) { answer |= BigInt(Buffer.from(p.data).readUInt32LE(0)) << shift; shift += 32n; }
          },
          hypercall: (abi) => abi.setResults([(abi.getArgument(1) + 1n) | (5n << 32n)]),
        });
        out.hello = [exit.kind, text.trim(), answer.toString(16)];
        vm.close();
      }
      { // MMIO reads and writes
        const { vm, vcpu } = boot('mmio');
        const writes = [];
        const exit = vcpu.runUntil({ mmio: (p) => {
          if (p.operation === 'write') writes.push(p.data.length);
          else p.data.fill(0xab);
        } });
        out.mmio = [exit.kind, writes.join(','), vcpu.getRegs().rdi.toString(16)];
        vm.close();
      }
      (async () => { // the async runner
        const { vm, vcpu } = boot('pio_in');
        const exit = await vcpu.runAsync({ io: (p) => p.data.fill(1) });
        out.async = [exit.kind, vcpu.getRegs().rdx.toString(16)];
        vm.close();
        console.log(JSON.stringify(out));
      })();
    `;
    const env = { ...process.env, VCPU_NO_EXTERNAL_BUFFERS: '1' };
    const result = JSON.parse(
      execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 30000 }),
    );
    expect(result).toEqual({
      pioIn: ['Hlt', '24242424'],
      bytes: 'ENOTSUP',
      // Errors of the copy path's native call are VcpuErrors too.
      noExit: ['VcpuError', 'EINVAL', 'handleIo'],
      closed: ['VcpuError', 'ECLOSED'],
      // The result (8 + 1, and 5 in the high dword) as the guest reports it.
      hello: ['Hlt', 'Hello from a 64-bit guest on /dev/kvm!', '500000009'],
      mmio: ['Hlt', '1,2,4,8', 'abababababababab'],
      async: ['Hlt', '1010101'],
    });
  });
});
