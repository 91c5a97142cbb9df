// Sandboxes: a C guest built with the SDK, its functions called from JS with every
// value type both ways, host functions that call back in, timeouts, faults with their
// rip, reset in place, snapshots restored in another process, pools used from workers,
// and guests that are bad in each way the contract names.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { Sandbox, SandboxError, VcpuError } from '../ts';
import { buildGuest } from '../ts/build_guest';
import { describeKvm, thrown as thrownBy } from './helpers';

const PKG = join(__dirname, '..');
const CLI = join(PKG, 'dist', 'cli.js');
let dir: string;
let elf: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vcpu-sandbox-'));
  elf = join(dir, 'guest.elf');
  buildGuest([join(__dirname, 'sandbox', 'guest.c')], elf);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const thrown = (f: () => unknown) => thrownBy<SandboxError>(f);

describeKvm('Sandbox', () => {
  test('every value type goes in and comes back, and the guest computes with it', () => {
    using sb = Sandbox.create({ guest: elf });
    expect(sb.exports).toEqual(expect.arrayContaining(['add', 'echo', 'join', 'depth']));
    expect(sb.call('init_value')).toBe(42n); // vcpu_init ran before the reset point
    for (const v of [
      0n,
      -1n,
      2n ** 63n - 1n,
      -(2n ** 63n),
      1.5,
      -0.25,
      Number.MAX_VALUE,
      true,
      false,
      '',
      'héllo, wörld ✓',
    ]) {
      expect(sb.call('echo', v)).toEqual(v);
    }
    expect(sb.call('echo', 2n ** 64n - 1n)).toBe(-1n); // u64 arrives as its i64 bits
    expect(sb.call('echo', new Uint8Array([1, 2, 255]))).toEqual(new Uint8Array([1, 2, 255]));
    expect(sb.call('echo', new Uint8Array(0))).toEqual(new Uint8Array(0));
    expect(sb.call('echo', undefined)).toBeUndefined();
    expect(sb.call('nothing')).toBeUndefined();
    expect([1n, 1.5, true, 's', new Uint8Array(1), undefined].map((v) => sb.call('type_of', v))).toEqual([
      1n,
      2n,
      3n,
      4n,
      5n,
      0n,
    ]);
    expect(sb.call('add', 40n, 2n)).toBe(42n);
    expect(sb.call('half', 5)).toBe(2.5);
    expect(sb.call('negate', false)).toBe(true);
    expect(sb.call('join', 'left', 'right')).toBe('left+right');
    expect(sb.call('sum_bytes', new Uint8Array(1000).fill(3))).toBe(3000n);
    expect(sb.call('argc', 1, 2n, 'x')).toBe(3n);
    const big = new Uint8Array(512 * 1024).fill(1);
    expect(sb.call('sum_bytes', big)).toBe(BigInt(big.length));
  });

  test('bad arguments are refused before the guest runs, and the sandbox stays usable', () => {
    using sb = Sandbox.create({ guest: elf });
    expect(thrown(() => sb.call('echo', {} as never)).code).toBe('EINVAL');
    expect(thrown(() => sb.call('echo', 2n ** 64n)).code).toBe('EINVAL');
    expect(thrown(() => sb.call('argc', ...new Array(17).fill(1))).code).toBe('EINVAL');
    expect(thrown(() => sb.call('sum_bytes', new Uint8Array(2 << 20))).code).toBe('E2BIG');
    const missing = thrown(() => sb.call('no_such_function'));
    expect(missing).toBeInstanceOf(SandboxError);
    expect(missing).toBeInstanceOf(VcpuError);
    expect(missing.code).toBe('ENOENT');
    expect(sb.call('add', 1n, 1n)).toBe(2n);
  });

  test('a host function gets the values, its result reaches the guest, and it may call back in', () => {
    const seen: unknown[] = [];
    using sb = Sandbox.create({
      guest: elf,
      host: {
        double: (x) => (seen.push(x), (x as bigint) * 2n),
        hello: (who) => `hello, ${String(who)}`,
        down: (n) => sb.call('depth', (n as bigint) - 1n),
      },
    });
    expect(sb.call('twice_plus_one', 20n)).toBe(41n);
    expect(seen).toEqual([20n]);
    expect(sb.call('greet')).toBe(BigInt('hello, guest'.length * 1000 + 'h'.charCodeAt(0)));
    expect(sb.call('depth', 20n)).toBe(20n); // 20 round trips guest → host → guest
    const deep = thrown(() => sb.call('depth', 1000n));
    expect(deep.code).toBe('ELOOP');
    sb.reset();
    expect(sb.call('depth', 3n)).toBe(3n);
  });

  test('a host function that throws: the call throws it, and the sandbox needs reset', () => {
    using sb = Sandbox.create({
      guest: elf,
      host: {
        double: () => {
          throw new Error('host says no');
        },
      },
    });
    expect(() => sb.call('twice_plus_one', 1n)).toThrow('host says no');
    expect(thrown(() => sb.call('add', 1n, 1n)).message).toMatch(/needs reset/);
    sb.reset();
    expect(sb.call('add', 1n, 1n)).toBe(2n);
  });

  test('a call past its timeout is stopped (ETIMEDOUT), then reset, then a good call', () => {
    using sb = Sandbox.create({ guest: elf, timeoutMs: 100, host: { tick: () => undefined } });
    for (const fn of ['spin', 'host_loop']) {
      const start = Date.now();
      const e = thrown(() => sb.call(fn));
      expect(e.code).toBe('ETIMEDOUT');
      expect(e.rip).toBeGreaterThanOrEqual(0x200000n);
      expect(Date.now() - start).toBeLessThan(5000);
      expect(thrown(() => sb.call('add', 1n, 2n)).code).toBe('ETIMEDOUT'); // until reset
      sb.reset();
      expect(sb.call('add', 1n, 2n)).toBe(3n);
    }
    sb.timeoutMs = 0; // no limit: a quick call still returns
    expect(sb.call('add', 2n, 2n)).toBe(4n);
  });

  test('a null dereference is a SandboxError with the faulting rip and address', () => {
    using sb = Sandbox.create({ guest: elf });
    const e = thrown(() => sb.call('null_deref'));
    expect(e).toBeInstanceOf(SandboxError);
    expect(e.code).toBe('EFAULT');
    expect(e.vector).toBe(14);
    expect(e.address).toBe(0n);
    expect(e.rip).toBeGreaterThanOrEqual(0x200000n);
    expect(e.message).toMatch(/page fault at rip 0x[0-9a-f]+ reading 0x0/);
    const symbols = execFileSync('nm', [elf], { encoding: 'utf8' });
    const at = BigInt('0x' + /^([0-9a-f]+) T null_deref$/m.exec(symbols)![1]);
    expect(e.rip! - at).toBeLessThan(32n); // inside null_deref
    expect(thrown(() => sb.call('add', 1n, 1n)).code).toBe('EFAULT');
    sb.reset();
    expect(thrown(() => sb.call('divide', 1n, 0n)).vector).toBe(0);
    sb.reset();
    expect(sb.call('divide', 9n, 3n)).toBe(3n);
    expect(thrown(() => sb.call('bad_string')).code).toBe('EFAULT'); // the result only:
    expect(sb.call('add', 1n, 1n)).toBe(2n); // the guest is fine
  });

  test('a guest that wrote 1000 pages has none of those writes after reset, and runs as new', () => {
    using sb = Sandbox.create({ guest: elf });
    for (let round = 0; round < 3; round++) {
      expect(sb.call('count')).toBe(1n);
      expect(sb.call('count')).toBe(2n);
      expect(sb.call('write_pages', 1000n)).toBe(1000n);
      expect(sb.call('read_pages')).toBe(1000n);
      sb.reset();
      expect(sb.call('read_pages')).toBe(0n);
      expect(sb.call('init_value')).toBe(42n);
      sb.reset();
    }
  });

  test('callAsync runs on a native thread; async host functions are awaited', async () => {
    using sb = Sandbox.create({
      guest: elf,
      timeoutMs: 200,
      host: {
        double: async (x) => (await Promise.resolve(x as bigint)) * 2n,
        down: (n) => sb.callAsync('depth', (n as bigint) - 1n),
      },
    });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    expect(await sb.callAsync('twice_plus_one', 5n)).toBe(11n);
    expect(await sb.callAsync('depth', 4n)).toBe(4n);
    const spin = sb.callAsync('spin');
    await expect(spin).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(10); // the event loop ran while the guest spun
    sb.reset();
    expect(thrown(() => sb.call('twice_plus_one', 1n)).message).toMatch(/returned a promise; use callAsync/);
  });

  test('Sandbox.restore in a child process continues from the snapshot, and resets to it', () => {
    const file = join(dir, 'counted.snap');
    {
      using sb = Sandbox.create({ guest: elf });
      sb.call('count');
      sb.call('count');
      sb.snapshot(file);
      expect(sb.call('count')).toBe(3n);
    }
    const script = `
      const { Sandbox } = require(${JSON.stringify(PKG)});
      const sb = Sandbox.restore(${JSON.stringify(file)}, { host: { double: (x) => x * 10n } });
      const out = [sb.call('count'), sb.call('count'), sb.call('twice_plus_one', 2n)];
      sb.reset();
      out.push(sb.call('count'), sb.call('init_value'));
      console.log(out.join(','));`;
    expect(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim()).toBe('3,4,21,3,42');
  });

  test('a pool hands out reset sandboxes, from two workers at once', async () => {
    const file = join(dir, 'pool.snap');
    Sandbox.create({ guest: elf }).snapshot(file);
    const body = `
      const { workerData, parentPort } = require('node:worker_threads');
      const { Sandbox } = require(${JSON.stringify(PKG)});
      const pool = Sandbox.pool({ snapshot: workerData.file, size: 2 });
      (async () => {
        const bad = [];
        for (let i = 0; i < 100; i++) {
          const sb = pool.acquire();
          const first = sb.call('count');
          const mine = sb.call('add', BigInt(workerData.id * 1000 + i), 0n);
          if (first !== 1n || mine !== BigInt(workerData.id * 1000 + i)) bad.push([i, first, mine]);
          sb.call('write_pages', 10n);
          pool.release(sb);
          if (i % 7 === 0) await new Promise((r) => setTimeout(r, Math.random() * 3));
        }
        pool.close();
        parentPort.postMessage(bad.map(String));
      })();`;
    const results = await Promise.all(
      [1, 2].map(
        (id) =>
          new Promise((resolve, reject) => {
            const w = new Worker(body, { eval: true, workerData: { file, id } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    expect(results).toEqual([[], []]);
  });

  test('a pool made from a guest keeps sandboxes ready and resets released ones off the caller', async () => {
    using pool = Sandbox.pool({ guest: elf, size: 2 });
    expect(pool.available).toBe(2);
    const a = pool.acquire();
    expect(a.call('count')).toBe(1n);
    pool.release(a);
    expect(() => pool.release(a)).toThrow(/not one this pool lent out/);
    await new Promise((r) => setImmediate(r));
    expect(pool.available).toBe(2);
    const b = pool.acquire();
    expect(b.call('count')).toBe(1n);
    const more = [pool.acquire(), pool.acquire()]; // past the ready ones: made on demand
    expect(more.map((s) => s.call('count'))).toEqual([1n, 1n]);
    pool.close();
    expect(() => pool.acquire()).toThrow(VcpuError);
    expect(b.closed).toBe(true);
  });

  test('bad guests: not an ELF, not a sandbox guest, a fault in vcpu_init, missing files', () => {
    const notElf = join(dir, 'not.elf');
    writeFileSync(notElf, 'just text');
    expect(thrown(() => Sandbox.create({ guest: notElf })).code).toBe('EINVAL');
    expect(thrown(() => Sandbox.create({ guest: join(dir, 'missing.elf') })).code).toBe('ENOENT');
    // A plain ELF without the runtime: it faults or never reports ready.
    const plain = join(dir, 'plain.c');
    writeFileSync(plain, 'void vcpu_init(void) { *(volatile int *)0 = 1; }\n');
    const crashing = join(dir, 'crashing.elf');
    buildGuest([plain], crashing);
    const e = thrown(() => Sandbox.create({ guest: crashing }));
    expect(e.code).toBe('EFAULT');
    expect(e.message).toMatch(/writing 0x0/);
    // Segments below the load address would overwrite the page tables: refused.
    const low = join(dir, 'low.elf');
    const bytes = readFileSync(elf);
    bytes.writeBigUInt64LE(0x1000n, 64 + 24); // the first program header's p_vaddr…
    bytes.writeBigUInt64LE(0x1000n, 64 + 32); // …and p_paddr
    writeFileSync(low, bytes);
    expect(thrown(() => Sandbox.create({ guest: low })).code).toBe('EINVAL');
    expect(thrown(() => Sandbox.create({ guest: elf, memory: '1M' })).code).toBe('EINVAL');
    expect(thrown(() => Sandbox.create({ guest: elf, bogus: 1 } as never)).code).toBe('EINVAL');
  });

  test('npx vcpu build-guest builds a guest the sandbox runs', () => {
    const src = join(dir, 'mul.c');
    writeFileSync(
      src,
      '#include <vcpu_guest.h>\nVCPU_EXPORT(mul) { return vcpu_f64(vcpu_arg_f64(args, 0) * vcpu_arg_f64(args, 1)); }\n',
    );
    const out = join(dir, 'mul.elf');
    execFileSync(process.execPath, [CLI, 'build-guest', src, '-o', out]);
    using sb = Sandbox.create({ guest: out, memory: '4M' });
    expect(sb.call('mul', 6, 7)).toBe(42);
    const broken = join(dir, 'broken.c');
    writeFileSync(broken, 'this is not C\n');
    let stderr = '';
    try {
      execFileSync(process.execPath, [CLI, 'build-guest', broken, '-o', join(dir, 'broken.elf')], { stdio: 'pipe' });
    } catch (err) {
      stderr = String((err as { stderr: Buffer }).stderr);
    }
    expect(stderr).toMatch(/build-guest: \S+ failed/);
  });
});
