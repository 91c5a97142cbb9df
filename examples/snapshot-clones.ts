// Sandboxes from a snapshot: a guest is brought to a good state once, written to a file,
// and each sandbox is restored from that file in about a millisecond, copy-on-write, so
// what one does never reaches the others or the file (guests/counter.asm: it counts in
// RBX and at 0x5000, and reports each number on port 0x10). Run with
// `npm run example -- snapshot-clones`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { Kvm, type Vcpu } from 'vcpu';

const GUESTS = join(dirname(require.resolve('vcpu/package.json')), 'guests');

/** Runs the counting guest to its next report; the number it reported. */
function next(vcpu: Vcpu): number {
  vcpu.run();
  let n = 0;
  vcpu.handleIo((p) => (n = Buffer.from(p.data).readUInt32LE()));
  return n;
}

export function main(_argv: readonly string[] = [], log: (line: string) => void = console.log): void {
  const dir = mkdtempSync(join(tmpdir(), 'vcpu-clones-'));
  const file = join(dir, 'ready.snap');
  const kvm = Kvm.open();
  try {
    const vm = kvm.createVm();
    vm.addMemory({ guestAddress: 0, size: 64 << 20 });
    vm.write(0x1000, readFileSync(join(GUESTS, 'counter.bin')));
    const vcpu = vm.createVcpu(0);
    vcpu.setupLongMode({ rip: 0x1000, rsp: 0x8000 });
    for (let i = 0; i < 1000; i++) next(vcpu); // "booting"
    const { pages } = vm.snapshot(file);
    vm.close();
    log(`snapshot: counted to 1000, ${pages} pages written`);

    for (const steps of [1, 10, 100]) {
      const start = process.hrtime.bigint();
      const sandbox = kvm.restoreVm(file);
      const [v] = sandbox.snapshotVcpuIds.map((id) => sandbox.createVcpu(id));
      let n = next(v);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      for (let i = 1; i < steps; i++) n = next(v);
      log(
        `sandbox ran ${steps} more: at ${n} (restored to its first exit in ${ms < 5 ? 'under 5' : ms.toFixed(1)} ms)`,
      );
      sandbox.close();
    }
  } finally {
    kvm.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) main();
