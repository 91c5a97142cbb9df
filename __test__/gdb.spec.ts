// The GDB stub with the real gdb (Debian's), in batch mode, against the test kernel's
// ELF and its symbols: held at startup_64, hbreak and break at symbols, stepi, guest
// memory, a watchpoint on a guest variable, two vcpus as threads, and the transcript
// finishing after detach; then under runAsync, where a breakpoint never reaches the
// handlers; then the CLI's --gdb.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { bootLinux, type Vcpu } from '../ts';
import { describeKvm, longMode } from './helpers';

const GDB = process.env.GDB ?? '/usr/bin/gdb';
const KERNEL = join(__dirname, '..', 'guests', 'test_kernel.elf');
const CLI = join(__dirname, '..', 'dist', 'cli.js');

/** Runs gdb in batch mode with `commands`; resolves with what it printed. */
function gdb(file: string | undefined, port: number, commands: string[]): Promise<string> {
  const args = ['-batch', '-nx', ...(file ? [file] : []), '-ex', `target remote 127.0.0.1:${port}`];
  for (const c of commands) args.push('-ex', c);
  return new Promise((resolve, reject) => {
    const child = spawn(GDB, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describeKvm('gdb', () => {
  beforeAll(() => {
    if (!existsSync(GDB)) throw new Error(`no gdb at ${GDB}: apt-get install gdb (or set GDB)`);
  });

  test('the test kernel: held at startup_64, breakpoints, stepi, memory, watch, threads, detach', async () => {
    const linux = bootLinux({ kernel: KERNEL, memory: '32M', cpus: 2, cmdline: 'console=ttyS0', gdb: { wait: true } });
    let text = '';
    linux.output.on('data', (d: Buffer) => (text += d.toString()));
    const done = linux.start();
    const out = await gdb(KERNEL, linux.gdb!.port, [
      'info registers rip',
      'info threads',
      'hbreak puthex',
      'continue',
      'info registers rax',
      'delete',
      'break newline',
      'continue',
      'stepi',
      'info registers rip',
      'x/4cb 0x7202',
      'print/x $cr0 & 1',
      'delete',
      'watch *(long *)&lines',
      'continue',
      'delete',
      'detach',
    ]);
    const exit = await done;
    linux.close();
    // Held before the first instruction, at the kernel's entry.
    expect(out).toMatch(/rip\s+0x100200\s+0x100200 <startup_64>/);
    expect(out).toMatch(/\* 1\s+Thread 1\.1[^\n]*startup_64/);
    expect(out).toMatch(/\n\s+2\s+Thread 1\.2/);
    // hbreak at a symbol: puthex's first call prints the loader type (0xff).
    expect(out).toMatch(/Hardware assisted breakpoint 1 at 0x100372/);
    expect(out).toMatch(/Breakpoint 1, 0x0000000000100372 in puthex/);
    expect(out).toMatch(/rax\s+0xff\s+255/);
    // break (on a debug register too) and stepi over newline's first instruction.
    expect(out).toMatch(/Breakpoint 2, 0x00000000001003b8 in newline/);
    expect(out).toMatch(/rip\s+0x1003bf\s+0x1003bf <newline\+7>/);
    // boot_params, read by guest virtual address: the "HdrS" magic at 0x202.
    expect(out).toMatch(/0x7202:\s+72 'H'\s+100 'd'\s+114 'r'\s+83 'S'/);
    expect(out).toMatch(/= 0x1\b/); // CR0.PE
    // A watchpoint on the kernel's own variable.
    const watch = /Hardware watchpoint 3: \*\(long \*\)&lines\s+Old value = (\d+)\s+New value = (\d+)/.exec(out);
    expect(watch).not.toBeNull();
    expect(Number(watch![2])).toBe(Number(watch![1]) + 1);
    expect(out).toMatch(/Inferior 1 \[[^\]]+\] detached|\[Inferior 1 \(process 1\) detached\]/);
    // After detach, the guest runs on to its end.
    expect(exit.kind).toBe('SystemEventReset');
    expect(text).toContain('vcpu-test-kernel\nboot_params: ok\n');
    expect(text.endsWith('bye\n')).toBe(true);
  }, 60000);

  test('under runAsync: gdb stops the guest, a breakpoint never reaches the handlers, detach lets it run on', async () => {
    const { vm, vcpu } = longMode('counter');
    const server = vm.gdbServer();
    let count = 0;
    const exits: string[] = [];
    const running = (vcpu as Vcpu).runAsync({
      io: (p) => {
        count = Buffer.from(p.data).readUInt32LE();
      },
    });
    while (count < 100) await new Promise((r) => setTimeout(r, 5));
    const out = await gdb(undefined, server.port, [
      'hbreak *0x1000',
      'continue',
      'print $rbx',
      'stepi',
      'print/x $rip',
      'print/x $rbx',
      'delete',
      'detach',
    ]);
    expect(out).toMatch(/Breakpoint 1, 0x0000000000001000 in \?\? \(\)/);
    const rbx = Number(/\$1 = (\d+)/.exec(out)?.[1]);
    expect(rbx).toBeGreaterThanOrEqual(100);
    expect(out).toMatch(/\$2 = 0x1003/); // one instruction: inc rbx
    expect(out).toContain(`$3 = 0x${(rbx + 1).toString(16)}`);
    const after = count;
    while (count < after + 100) await new Promise((r) => setTimeout(r, 5));
    vcpu.signalHandle().signalImmediateExit();
    exits.push((await running).kind);
    expect(exits).toEqual(['Intr']); // never a Debug exit
    server.close();
    vm.close();
  }, 60000);

  test('npx vcpu boot --gdb prints how to connect and waits for gdb', async () => {
    const child = spawn(process.execPath, [CLI, 'boot', '--kernel', KERNEL, '--mem', '32M', '--gdb', '127.0.0.1:0'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const port = await new Promise<number>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /gdb stub on 127\.0\.0\.1:(\d+)/.exec(stderr);
        if (m) resolve(Number(m[1]));
      });
    });
    expect(stderr).toMatch(/the guest waits for continue/);
    expect(stderr).toMatch(/connect with: gdb .*test_kernel\.elf -ex 'target remote 127\.0\.0\.1:\d+'/);
    await new Promise((r) => setTimeout(r, 300));
    expect(stdout).toBe(''); // nothing ran yet
    const out = await gdb(KERNEL, port, ['info registers rip', 'detach']);
    expect(out).toMatch(/<startup_64>/);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(stdout).toContain('bye');
  }, 60000);
});
