// Booting Linux through the boot protocol: the test kernel of guests/ (a bzImage and an
// ELF vmlinux) reports what it was given; through the TS helper and through the CLI.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bootLinux, parseSize } from '../ts';
import { describeKvm } from './helpers';

const GUESTS = join(__dirname, '..', 'guests');
const CLI = join(__dirname, '..', 'dist', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'vcpu-linux-'));
const initrdPath = join(dir, 'initrd.img');
writeFileSync(initrdPath, Buffer.from(Array.from({ length: 4096 }, (_, i) => i & 0xff)));

const report = (cmdline: string, memory = 64 << 20) =>
  [
    'vcpu-test-kernel',
    'boot_params: ok',
    'loader: ff',
    'e820: 0 9fc00 1',
    `e820: 100000 ${(memory - 0x100000).toString(16)} 1`,
    `cmdline: ${cmdline}`,
    'initrd: 1000 7f800',
    'bye',
    '',
  ].join('\n');

async function boot(kernel: string) {
  const linux = bootLinux({
    kernel: join(GUESTS, kernel),
    initrd: initrdPath,
    cmdline: 'console=ttyS0 root=/dev/ram0',
    memory: '64M',
  });
  const chunks: Buffer[] = [];
  linux.output.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise((r) => linux.output.on('end', r));
  const exit = await linux.start();
  await ended;
  linux.close();
  return { exit, text: Buffer.concat(chunks).toString() };
}

describeKvm('Linux boot protocol', () => {
  test.each(['test_kernel.bzImage', 'test_kernel.elf'])('%s boots through bootLinux', async (kernel) => {
    const { exit, text } = await boot(kernel);
    expect(text).toBe(report('console=ttyS0 root=/dev/ram0'));
    expect(exit).toEqual({ kind: 'SystemEventReset' }); // powered off through the i8042
  });

  test('the initrd is placed high in RAM and the loader says where', () => {
    const linux = bootLinux({ kernel: join(GUESTS, 'test_kernel.bzImage'), initrd: initrdPath, memory: '64M' });
    expect(linux.boot.entry).toBe(0x100200);
    expect(linux.boot.zeroPage).toBe(0x7000);
    expect(linux.boot.initrdSize).toBe(4096);
    expect(linux.boot.initrdAddress).toBe((64 << 20) - 4096);
    expect(Buffer.from(linux.vm.read(linux.boot.initrdAddress, 4))).toEqual(Buffer.from([0, 1, 2, 3]));
    linux.close();
  });

  test('several vcpus: an MP table describes them, the APs wait for the kernel', async () => {
    const linux = bootLinux({ kernel: join(GUESTS, 'test_kernel.bzImage'), memory: '64M', cpus: 3 });
    const mp = Buffer.from(linux.vm.read(0x9fc00, 0x400));
    expect(mp.subarray(0, 4).toString()).toBe('_MP_');
    expect(mp.readUInt32LE(4)).toBe(0x9fc10); // the configuration table follows
    expect(mp.subarray(16, 20).toString()).toBe('PCMP');
    const entries = mp.readUInt16LE(16 + 34);
    expect(entries).toBe(3 + 2 + 16 + 2); // processors, bus + IOAPIC, ISA IRQs, LINT0/1
    const sum = (b: Buffer) => b.reduce((a, x) => (a + x) & 0xff, 0);
    expect(sum(mp.subarray(0, 16))).toBe(0);
    expect(sum(mp.subarray(16, 16 + mp.readUInt16LE(20)))).toBe(0);
    expect(linux.vcpus.map((v) => v.getMpState())).toEqual([0, 1, 1]); // runnable, waiting for INIT
    expect((await linux.start()).kind).toBe('SystemEventReset');
    linux.close();
  });

  test('console input reaches the guest', async () => {
    const linux = bootLinux({ kernel: join(GUESTS, 'test_kernel.elf'), cmdline: 'echo', memory: '32M' });
    let text = '';
    linux.output.on('data', (c: Buffer) => (text += c));
    linux.input.write('shout\n');
    expect((await linux.start()).kind).toBe('SystemEventReset');
    expect(text).toContain('SHOUT\nbye\n');
    linux.close();
  });

  test('bad kernels and sizes give clear errors', () => {
    const garbage = join(dir, 'garbage');
    writeFileSync(garbage, 'not a kernel');
    expect(() => bootLinux({ kernel: garbage, memory: '32M' })).toThrow(/not a loadable x86-64 kernel/);
    expect(() => bootLinux({ kernel: join(dir, 'missing') })).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => bootLinux({ kernel: join(GUESTS, 'test_kernel.elf'), memory: '1M' })).toThrow(/at least 16M/);
    expect(() => bootLinux({ kernel: join(GUESTS, 'test_kernel.elf'), cpus: 0 })).toThrow(/cpus must be 1 to 254/);
    const big = join(dir, 'big.img');
    writeFileSync(big, Buffer.alloc(40 << 20));
    expect(() => bootLinux({ kernel: join(GUESTS, 'test_kernel.elf'), initrd: big, memory: '32M' })).toThrow(
      expect.objectContaining({ code: 'ENOMEM' }),
    );
    expect(parseSize('512M')).toBe(512 << 20);
    expect(parseSize('1G')).toBe(1 << 30);
    expect(() => parseSize('lots')).toThrow(/not a size/);
  });
});

describeKvm('npx vcpu boot', () => {
  test('boots the test kernel and exits 0 when it powers off', () => {
    const out = execFileSync(
      process.execPath,
      [
        CLI,
        'boot',
        '--kernel',
        join(GUESTS, 'test_kernel.bzImage'),
        '--initrd',
        initrdPath,
        '--mem',
        '64M',
        '--cmdline',
        'console=ttyS0 quiet',
      ],
      { encoding: 'utf8', input: '' },
    );
    expect(out).toBe(report('console=ttyS0 quiet'));
  });

  test('pipes stdin to the console', () => {
    const out = execFileSync(
      process.execPath,
      [CLI, 'boot', '--kernel', join(GUESTS, 'test_kernel.elf'), '--mem', '32M', '--cmdline', 'echo'],
      {
        encoding: 'utf8',
        input: 'from a pipe\n',
      },
    );
    expect(out).toContain('FROM A PIPE\nbye\n');
  });

  test('in a terminal: raw mode, and Ctrl-A x quits', () => {
    // `script` gives the CLI a pseudo-terminal; the guest echoes until a newline, which
    // raw mode never sends for Enter, so only Ctrl-A x ends it.
    const cmd = `node ${CLI} boot --kernel ${join(GUESTS, 'test_kernel.bzImage')} --mem 32M --cmdline echo`;
    const r = spawnSync(
      'sh',
      ['-c', `(sleep 2; printf 'abc'; sleep 1; printf '\\001x') | script -qfec "${cmd}" /dev/null`],
      {
        encoding: 'utf8',
        timeout: 30000,
      },
    );
    expect(r.stdout).toContain('ABC');
    expect(r.status).toBe(130);
  });

  test('--help, a missing kernel and an invalid one', () => {
    expect(execFileSync(process.execPath, [CLI, 'boot', '--help'], { encoding: 'utf8' })).toContain(
      'Usage: vcpu boot --kernel PATH',
    );
    const missing = spawnSync(process.execPath, [CLI, 'boot', '--kernel', join(dir, 'nope')], { encoding: 'utf8' });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/cannot read the kernel .*nope/);
    const invalid = spawnSync(process.execPath, [CLI, 'boot', '--kernel', join(__dirname, '..', 'package.json')], {
      encoding: 'utf8',
    });
    expect(invalid.status).toBe(1);
    expect(invalid.stderr).toMatch(/not a loadable x86-64 kernel/);
    const usage = spawnSync(process.execPath, [CLI, 'boot'], { encoding: 'utf8' });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/--kernel PATH is required/);
  });
});
