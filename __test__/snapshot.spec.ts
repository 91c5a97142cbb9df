// Snapshot and restore as a user would check them: the counting guest continues with
// the next number (here and in a child process), restores from one file diverge and
// leave it untouched, diff chains restore each point, an irqchip VM's LAPIC comes back,
// the Linux test kernel waiting for input finishes its transcript in a new process, and
// every bad file is refused with the reason.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { bootLinux, Kvm, restoreLinux, type Vcpu, type Vm, VcpuError } from '../ts';
import { describeKvm, longMode } from './helpers';

const DIST = join(__dirname, '..', 'dist');
const CLI = join(DIST, 'cli.js');
const KERNEL = join(__dirname, '..', 'guests', 'test_kernel.elf');
const COUNTER = 0x5000; // where guests/counter.asm keeps its count

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vcpu-snapshot-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the counting guest to its next port write; returns the number it wrote. */
function nextCount(vcpu: Vcpu): number {
  const exit = vcpu.run();
  expect(exit.kind).toBe('Io');
  let count = -1;
  vcpu.handleIo((p) => {
    count = Buffer.from(p.data).readUInt32LE();
  });
  return count;
}

const counterOf = (vm: Vm) => Buffer.from(vm.read(COUNTER, 8)).readBigUInt64LE();
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** The VcpuError `fn` throws. */
function errorOf(fn: () => unknown): VcpuError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VcpuError);
    return e as VcpuError;
  }
  throw new Error('it did not throw');
}

describeKvm('snapshot and restore', () => {
  test('a counting guest continues with the next number, in this process and in a child', () => {
    const { vm, vcpu } = longMode('counter');
    for (let i = 1; i <= 5; i++) expect(nextCount(vcpu)).toBe(i);
    const path = join(dir, 'count.snap');
    const info = vm.snapshot(path);
    expect(info.pages).toBeGreaterThanOrEqual(3); // code, page tables, the counter
    expect(info.bytes).toBeGreaterThanOrEqual(info.pages * 4096);
    expect(info.bytes).toBeLessThan(statSync(path).size); // 2 MiB of RAM, mostly holes
    expect(nextCount(vcpu)).toBe(6); // the original runs on
    vm.close();

    const kvm = Kvm.open();
    const back = kvm.restoreVm(path);
    expect(back.snapshotVcpuIds).toEqual([0]);
    expect(back.memory.map((m) => [m.guestAddress, m.size])).toEqual([[0, 2 << 20]]);
    expect(counterOf(back)).toBe(5n);
    const v = back.createVcpu(0);
    expect(v.getRegs().rbx).toBe(5n);
    expect(nextCount(v)).toBe(6);
    expect(nextCount(v)).toBe(7);
    expect(counterOf(back)).toBe(7n);
    back.close();

    const child = execFileSync(
      process.execPath,
      [
        '-e',
        `const { Kvm } = require(${JSON.stringify(DIST)});
         const vm = Kvm.open().restoreVm(${JSON.stringify(path)});
         const v = vm.createVcpu(0);
         const counts = [];
         for (let i = 0; i < 3; i++) { v.run(); v.handleIo((p) => counts.push(Buffer.from(p.data).readUInt32LE())); }
         process.stdout.write(counts.join(','));`,
      ],
      { encoding: 'utf8' },
    );
    expect(child).toBe('6,7,8');
  });

  test('two restores from one file diverge; the file never changes; workers share the memory', async () => {
    const { vm, vcpu } = longMode('counter');
    nextCount(vcpu);
    const path = join(dir, 'diverge.snap');
    vm.snapshot(path);
    vm.close();
    const before = sha256(path);
    const kvm = Kvm.open();
    const a = kvm.restoreVm(path);
    const b = kvm.restoreVm(path);
    const va = a.createVcpu(0);
    const vb = b.createVcpu(0);
    for (let i = 0; i < 10; i++) nextCount(va);
    a.memory[0].bytes.set(Buffer.from('only in a'), 0x6000);
    expect(nextCount(vb)).toBe(2);
    expect(counterOf(a)).toBe(11n);
    expect(counterOf(b)).toBe(2n);
    expect(Buffer.from(b.read(0x6000, 9))).toEqual(Buffer.alloc(9));
    // A worker sees the same restored memory, and its writes are seen here.
    const seen = await new Promise<string>((resolve, reject) => {
      const w = new Worker(
        `const { Vm } = require(${JSON.stringify(DIST)});
         const { workerData, parentPort } = require('node:worker_threads');
         const vm = Vm.fromHandle(workerData);
         const text = Buffer.from(vm.memory[0].bytes.subarray(0x6000, 0x6009)).toString();
         vm.write(0x6100, Buffer.from('from the worker'));
         parentPort.postMessage(text);`,
        { eval: true, workerData: a.handle },
      );
      w.once('message', resolve);
      w.once('error', reject);
    });
    expect(seen).toBe('only in a');
    expect(Buffer.from(a.read(0x6100, 15)).toString()).toBe('from the worker');
    a.close();
    b.close();
    expect(sha256(path)).toBe(before);
  });

  test('a diff chain restores each point; a diff holds only what was written', () => {
    const { vm, vcpu } = longMode('counter');
    const [full, d1, d2] = ['full', 'd1', 'd2'].map((n) => join(dir, `chain-${n}.snap`));
    for (let i = 0; i < 5; i++) nextCount(vcpu);
    const whole = vm.snapshot(full);
    for (let i = 0; i < 5; i++) nextCount(vcpu);
    vm.write(0x7000, Buffer.alloc(16, 0xab)); // the host's own writes count too
    const one = vm.snapshot(d1, { diff: true });
    expect(one.pages).toBeGreaterThanOrEqual(2);
    expect(one.pages).toBeLessThan(whole.pages);
    for (let i = 0; i < 5; i++) nextCount(vcpu);
    vm.write(0x7000, Buffer.alloc(16)); // zero again: the diff says so
    vm.snapshot(d2, { diff: true });
    vm.close();

    const kvm = Kvm.open();
    const at1 = kvm.restoreVm(d1);
    expect(Buffer.from(at1.read(0x7000, 16))).toEqual(Buffer.alloc(16, 0xab));
    expect(nextCount(at1.createVcpu(0))).toBe(11);
    const at2 = kvm.restoreVm(d2);
    expect(Buffer.from(at2.read(0x7000, 16))).toEqual(Buffer.alloc(16));
    const v2 = at2.createVcpu(0);
    expect(nextCount(v2)).toBe(16);
    // A restored VM's diff applies to the file it came from.
    const d3 = join(dir, 'chain-d3.snap');
    at2.snapshot(d3, { diff: true });
    expect(nextCount(kvm.restoreVm(d3).createVcpu(0))).toBe(17);
    at1.close();
    at2.close();
  });

  test('a saved vcpu comes back in a worker', async () => {
    const { vm, vcpu } = longMode('counter');
    for (let i = 0; i < 3; i++) nextCount(vcpu);
    const path = join(dir, 'worker.snap');
    vm.snapshot(path);
    vm.close();
    const back = Kvm.open().restoreVm(path);
    const next = await new Promise<number>((resolve, reject) => {
      const w = new Worker(
        `const { Vm } = require(${JSON.stringify(DIST)});
         const { workerData, parentPort } = require('node:worker_threads');
         const v = Vm.fromHandle(workerData).createVcpu(0);
         v.run();
         v.handleIo((p) => parentPort.postMessage(Buffer.from(p.data).readUInt32LE()));`,
        { eval: true, workerData: back.handle },
      );
      w.once('message', resolve);
      w.once('error', reject);
    });
    expect(next).toBe(4);
    back.close();
  });

  test('an irqchip VM gets its LAPIC back', () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm({ irqchip: true });
    vm.addMemory({ guestAddress: 0, size: 1 << 20 });
    const vcpu = vm.createVcpu(0);
    const lapic = vcpu.getLapic();
    lapic.regs[0x80] = 0x20; // task priority
    lapic.regs[0xf0] = 0xff; // spurious vector, APIC enabled
    vcpu.setLapic(lapic);
    const path = join(dir, 'lapic.snap');
    vm.snapshot(path);
    const back = kvm.restoreVm(path).createVcpu(0).getLapic();
    expect(back.regs[0x80]).toBe(0x20);
    expect(back.regs[0xf0]).toBe(0xff);
    expect(Array.from(back.regs.subarray(0, 0x400))).toEqual(Array.from(vcpu.getLapic().regs.subarray(0, 0x400)));
    vm.close();
  });

  test('EBUSY while a vcpu is inside run() on another thread', async () => {
    const { vm, vcpu } = longMode('spin');
    const running = vcpu.runAsync({});
    await new Promise((r) => setTimeout(r, 50));
    const busy = errorOf(() => vm.snapshot(join(dir, 'running.snap')));
    expect(busy.code).toBe('EBUSY');
    expect(busy.message).toMatch(/vcpu 0 is inside run\(\)/);
    vcpu.signalHandle().signalImmediateExit();
    expect((await running).kind).toBe('Intr');
    expect(vm.snapshot(join(dir, 'running.snap')).pages).toBeGreaterThan(0);
    vm.close();
  });

  test('EBUSY while an exit waits for its handler or a handler runs; EINVAL for a diff of nothing', () => {
    const { vm, vcpu } = longMode('counter');
    const path = join(dir, 'busy.snap');
    expect(vcpu.run().kind).toBe('Io');
    const busy = errorOf(() => vm.snapshot(path));
    expect(busy.code).toBe('EBUSY');
    expect(busy.message).toMatch(/vcpu 0 has an exit waiting for its handler/);
    vcpu.handleIo(() => {
      expect(errorOf(() => vm.snapshot(path)).code).toBe('EBUSY');
    });
    expect(vm.snapshot(path).pages).toBeGreaterThan(0);
    const fresh = longMode('counter');
    const diff = errorOf(() => fresh.vm.snapshot(join(dir, 'nothing.snap'), { diff: true }));
    expect(diff.code).toBe('EINVAL');
    expect(diff.message).toMatch(/earlier snapshot or restore/);
    expect(errorOf(() => vm.snapshot(path, { dif: true } as never)).message).toMatch(/dif/);
    fresh.vm.close();
    vm.close();
  });

  test('every bad file is refused with EINVAL saying which', () => {
    const { vm, vcpu } = longMode('counter');
    nextCount(vcpu);
    const good = join(dir, 'good.snap');
    vm.snapshot(good);
    vm.close();
    const bytes = readFileSync(good);
    const kvm = Kvm.open();
    const refused = (name: string, data: Uint8Array, why: RegExp) => {
      const p = join(dir, `bad-${name}.snap`);
      writeFileSync(p, data);
      const e = errorOf(() => kvm.restoreVm(p));
      expect([name, e.code]).toEqual([name, 'EINVAL']);
      expect(e.message).toMatch(why);
    };
    const flip = (at: number) => {
      const copy = Buffer.from(bytes);
      copy[at] ^= 1;
      return copy;
    };
    refused('text', Buffer.from('not a snapshot at all'), /not a vcpu snapshot/);
    refused('truncated', bytes.subarray(0, bytes.length - 100), /truncated/);
    const version = Buffer.from(bytes);
    version.writeUInt32LE(7, 8);
    refused('version', version, /another version of vcpu/);
    refused('header', flip(33), /corrupt/);
    refused('state', flip(bytes.length - 50), /corrupt/);
    refused('memory', flip(4096 + 0x1000), /checksum/); // the guest's code
    refused('hole', flip(4096 + 0x10_0000), /corrupt/); // a page that was all zeros

    // A diff whose base is gone.
    const base = join(dir, 'base.snap');
    const diff = join(dir, 'orphan.snap');
    const again = longMode('counter');
    again.vm.snapshot(base);
    nextCount(again.vcpu);
    again.vm.snapshot(diff, { diff: true });
    again.vm.close();
    rmSync(base);
    const orphan = errorOf(() => kvm.restoreVm(diff));
    expect(orphan.code).toBe('EINVAL');
    expect(orphan.message).toMatch(/base .*base\.snap is missing/);
    expect(errorOf(() => kvm.restoreVm(join(dir, 'nonexistent.snap'))).code).toBe('ENOENT');
    expect(errorOf(() => kvm.restoreVm(42 as never)).code).toBe('EINVAL');
  });

  test('a signed snapshot restores with its key only, and not once changed', () => {
    const { vm, vcpu } = longMode('counter');
    expect(nextCount(vcpu)).toBe(1);
    const signed = join(dir, 'signed.snap');
    const key = 'a key of the user, read from a secret store';
    vm.snapshot(signed, { key });
    vm.close();
    const kvm = Kvm.open();
    const resumes = (restored: Vm) => {
      expect(nextCount(restored.createVcpu(0))).toBe(2);
      restored.close();
    };
    resumes(kvm.restoreVm(signed, { key }));
    resumes(kvm.restoreVm(signed, { key: Buffer.from(key) }));
    resumes(kvm.restoreVm(signed)); // no key: trusted input, as an unsigned file
    const refused = (path: string, options: object, why: RegExp) => {
      const e = errorOf(() => kvm.restoreVm(path, options));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toMatch(why);
    };
    refused(signed, { key: 'another key' }, /signature/);
    refused(signed, { key: '' }, /key must be a non-empty/);
    refused(signed, { key: 42 }, /key must be a non-empty/);
    refused(signed, { keys: key }, /unknown option 'keys'/);
    // One byte of the guest's code changed: refused before anything is mapped.
    const bytes = readFileSync(signed);
    bytes[4096 + 0x1000 + 3] ^= 1;
    const changed = join(dir, 'signed-changed.snap');
    writeFileSync(changed, bytes);
    refused(changed, { key }, /checksum|signature|changed/);
    // An unsigned file is refused when a key is asked for.
    const plain = longMode('counter');
    const unsigned = join(dir, 'unsigned.snap');
    plain.vm.snapshot(unsigned);
    plain.vm.close();
    refused(unsigned, { key }, /not signed/);
  });

  test('the Linux test kernel, snapshotted while it waits for input, finishes in a new process', async () => {
    const linux = bootLinux({ kernel: KERNEL, cmdline: 'echo', memory: '32M' });
    let text = '';
    linux.output.on('data', (c: Buffer) => (text += c.toString()));
    const running = linux.start();
    while (!text.includes('initrd: 0 0')) await new Promise((r) => setTimeout(r, 10));
    linux.input.write('half '); // echoed now, and part of the line it waits for
    while (!text.includes('HALF')) await new Promise((r) => setTimeout(r, 10));
    expect(errorOf(() => linux.snapshot(join(dir, 'early.snap'))).code).toBe('EBUSY');
    linux.stop();
    expect((await running).kind).toBe('Intr');
    const path = join(dir, 'linux.snap');
    linux.snapshot(path);
    const signed = join(dir, 'linux-signed.snap');
    linux.snapshot(signed, { key: 'machine key' });
    linux.close();
    expect(text).not.toContain('bye');
    // A signed machine comes back with its key only; an unsigned one not when a key is asked.
    restoreLinux(signed, { key: 'machine key' }).close();
    expect(errorOf(() => restoreLinux(signed, { key: 'other key' })).message).toMatch(/signature/);
    expect(errorOf(() => restoreLinux(path, { key: 'machine key' })).message).toMatch(/not signed/);

    const child = spawnSync(
      process.execPath,
      [
        '-e',
        `const { restoreLinux } = require(${JSON.stringify(DIST)});
         const linux = restoreLinux(${JSON.stringify(path)});
         linux.output.pipe(process.stdout);
         linux.input.write('and the rest\\n');
         linux.start().then((exit) => { linux.close(); process.stderr.write(exit.kind); });`,
      ],
      { encoding: 'utf8', timeout: 30000 },
    );
    expect(child.stderr).toBe('SystemEventReset');
    expect(child.stdout).toBe('AND THE REST\nbye\n');
    // A plain VM's snapshot is not a Linux machine.
    expect(errorOf(() => restoreLinux(join(dir, 'good.snap'))).message).toMatch(/not of a Linux machine/);
  }, 60000);

  test('npx vcpu boot --snapshot: Ctrl-A s writes it and the guest runs on; npx vcpu restore continues it', () => {
    const path = join(dir, 'cli.snap');
    const cmd = `node ${CLI} boot --kernel ${KERNEL} --mem 32M --cmdline echo --snapshot ${path}`;
    const r = spawnSync(
      'sh',
      [
        '-c',
        `(sleep 2; printf 'abc'; sleep 1; printf '\\001s'; sleep 1; printf 'def'; sleep 1; printf '\\001x') | script -qfec "${cmd}" /dev/null`,
      ],
      { encoding: 'utf8', timeout: 30000 },
    );
    expect(r.stdout).toContain('ABC');
    expect(r.stdout).toMatch(/snapshot written to .*cli\.snap/);
    expect(r.stdout).toContain('DEF'); // it ran on after the snapshot
    expect(r.status).toBe(130);
    // The snapshot has "abc" typed, not "def".
    const out = execFileSync(process.execPath, [CLI, 'restore', path], { encoding: 'utf8', input: 'xyz\n' });
    expect(out).toBe('XYZ\nbye\n');
  });
});
