#!/usr/bin/env node
/**
 * `npx vcpu boot --kernel PATH [--initrd PATH] [--cmdline STR] [--mem 512M] [--cpus N]
 * [--disk PATH[,ro]]… [--rng] [--web [HOST:]PORT] [--snapshot PATH]`: boots a Linux kernel with its serial console
 * in this terminal (raw mode; Ctrl-A x quits, Ctrl-A s writes the snapshot, Ctrl-A
 * Ctrl-A sends Ctrl-A, as in QEMU) and, with `--web`, in a browser too.
 * `npx vcpu restore PATH [--web …] [--snapshot PATH] [--gdb …]` continues a snapshot the
 * same way. `--gdb [HOST:]PORT` serves the GDB remote protocol (waiting for gdb's continue
 * unless `--gdb-nowait`). `npx vcpu build-guest a.c -o fn.elf` builds a sandbox guest.
 * @internal
 * @packageDocumentation
 */
import { parseArgs } from 'node:util';

import { buildGuest } from './build_guest';
import { VcpuError } from './errors';
import type { GdbServerOptions } from './gdb';
import {
  bootLinux,
  DEFAULT_CMDLINE,
  restoreLinux,
  type DiskOptions,
  type LinuxMachine,
  type NetOptions,
} from './linux';
import type { VsockOptions } from './vsock';
import { serveConsole } from './web_console';

const USAGE = `Usage: vcpu boot --kernel PATH [options]
       vcpu restore PATH [--web [HOST:]PORT] [--snapshot PATH] [--gdb [HOST:]PORT]
       vcpu build-guest a.c [b.c …] -o fn.elf [-- compiler flags]

boot: boots a Linux kernel (x86: bzImage or ELF vmlinux; arm64: Image, plain or
gzip) on /dev/kvm with its serial console in this terminal. restore: continues a machine from a snapshot file
(written by Ctrl-A s), console and all, in this or any later process.
Ctrl-A x quits; Ctrl-A s writes the snapshot (with --snapshot); Ctrl-A Ctrl-A sends
Ctrl-A. build-guest: compiles a sandbox guest (C, with <vcpu_guest.h>) with gcc or
clang and links it with the SDK's runtime, for Sandbox.create({ guest }).

Options:
  --kernel PATH     the kernel (required)
  --initrd PATH     an initrd or initramfs
  --cmdline STR     the kernel command line
                    (default: ${DEFAULT_CMDLINE})
  --mem SIZE        guest memory, e.g. 256M or 1G (default: 512M)
  --cpus N          virtual CPUs (default: 1)
  --disk PATH[,ro]  a virtio-blk disk over a raw image (repeat for more: /dev/vda,
                    /dev/vdb, …); ',ro' makes it read-only
  --rng             a virtio-rng device (the host's getrandom)
  --console virtio  the console on a virtio console (hvc0) instead of COM1
  --vsock CID[,UDS] a virtio-vsock device for guest CID, its host side on the UNIX
                    socket UDS (Firecracker's convention; default: one in /tmp)
  --net tap=NAME[,mac=MAC]
                    a virtio-net interface on the tap device NAME (repeat for more)
  --web [HOST:]PORT also serve the console as a web page (xterm.js) on HOST (default
                    127.0.0.1) and PORT (0 picks one); the URL, with its secret token,
                    is printed on stderr. The terminal keeps its console: both see the
                    output and both may type.
  --snapshot PATH   where Ctrl-A s writes a snapshot of the machine (the guest
                    pauses while it is written, then runs on)
  --gdb [HOST:]PORT serve the GDB remote protocol on HOST (default 127.0.0.1) and
                    PORT (0 picks one); the kernel waits at its entry for gdb's
                    continue (QEMU's -s -S). How to connect is printed on stderr.
  --gdb-nowait      with --gdb: start at once; gdb may attach later
  -h, --help        this text

The exit status is 0 when the guest powers off or reboots, 1 on an error, 2 on bad
usage, 130 when you quit.`;

const CTRL_A = 0x01;

const CONSOLE_OPTIONS = {
  web: { type: 'string' },
  snapshot: { type: 'string' },
  gdb: { type: 'string' },
  'gdb-nowait': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function boot(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kernel: { type: 'string' },
      initrd: { type: 'string' },
      cmdline: { type: 'string' },
      mem: { type: 'string', default: '512M' },
      cpus: { type: 'string', default: '1' },
      disk: { type: 'string', multiple: true },
      rng: { type: 'boolean' },
      console: { type: 'string' },
      vsock: { type: 'string' },
      net: { type: 'string', multiple: true },
      ...CONSOLE_OPTIONS,
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.kernel) {
    process.stderr.write(`vcpu: --kernel PATH is required\n\n${USAGE}\n`);
    return 2;
  }
  const linux = bootLinux({
    kernel: values.kernel,
    initrd: values.initrd,
    cmdline: values.cmdline ?? DEFAULT_CMDLINE,
    memory: values.mem,
    cpus: Number(values.cpus),
    gdb: gdbOptions(values),
    disks: (values.disk ?? []).map(diskOption),
    rng: values.rng,
    console: values.console as 'serial' | 'virtio' | undefined,
    vsock: values.vsock === undefined ? undefined : vsockOption(values.vsock),
    net: (values.net ?? []).map(netOption),
  });
  if (linux.vsock) process.stderr.write(`vcpu: vsock for guest CID ${linux.vsock.cid} on ${linux.vsock.uds}\r\n`);
  return attach(linux, values, values.kernel);
}

async function restore(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: CONSOLE_OPTIONS,
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`vcpu: restore takes one snapshot file\n\n${USAGE}\n`);
    return 2;
  }
  return attach(restoreLinux(positionals[0], { gdb: gdbOptions(values) }), values, 'vmlinux');
}

/**
 * Runs `linux` with its console on this terminal (and the web, if asked) until the
 * guest is done or the user quits; Ctrl-A s pauses it, writes the snapshot and runs on.
 */
async function attach(
  linux: LinuxMachine,
  options: { web?: string; snapshot?: string; gdb?: string; 'gdb-nowait'?: boolean },
  kernel: string,
): Promise<number> {
  if (linux.gdb) {
    const host = gdbOptions(options)?.host ?? '127.0.0.1';
    const waits = options['gdb-nowait'] ? '' : ' (the guest waits for continue)';
    process.stderr.write(
      `vcpu: gdb stub on ${host}:${linux.gdb.port}${waits}; connect with: ` +
        `gdb ${kernel} -ex 'target remote ${host}:${linux.gdb.port}' (break and hbreak use the 4 debug registers)\r\n`,
    );
  }
  linux.output.pipe(process.stdout);
  const web = options.web === undefined ? undefined : await serveConsole(linux, address('--web', options.web));
  if (web) process.stderr.write(`vcpu: web console at ${web.url}\r\n`);
  const stdin = process.stdin;
  let quit = false;
  let snapshotWanted = false;
  if (stdin.isTTY) {
    stdin.setRawMode(true);
    let escape = false;
    stdin.on('data', (chunk: Buffer) => {
      const forward: number[] = [];
      for (const byte of chunk) {
        if (escape) {
          escape = false;
          if (byte === 0x78 /* x */) {
            quit = true;
            linux.stop();
            return;
          }
          if (byte === 0x73 /* s */) {
            if (options.snapshot === undefined) {
              process.stderr.write('\r\nvcpu: no --snapshot PATH was given\r\n');
            } else {
              snapshotWanted = true;
              linux.stop();
            }
          }
          if (byte === CTRL_A) forward.push(CTRL_A);
        } else if (byte === CTRL_A) {
          escape = true;
        } else {
          forward.push(byte);
        }
      }
      if (forward.length > 0) linux.input.write(Buffer.from(forward));
    });
  } else {
    stdin.on('data', (chunk: Buffer) => linux.input.write(chunk));
  }
  try {
    for (;;) {
      const exit = await linux.start();
      if (quit) return 130;
      if (snapshotWanted && options.snapshot !== undefined) {
        snapshotWanted = false;
        const { pages } = linux.snapshot(options.snapshot);
        process.stderr.write(`\r\nvcpu: snapshot written to ${options.snapshot} (${pages} pages)\r\n`);
        continue;
      }
      if (exit.kind === 'SystemEventReset' || exit.kind === 'SystemEventShutdown') return 0;
      process.stderr.write(
        `\nvcpu: the guest stopped: ${JSON.stringify(exit, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`,
      );
      return 1;
    }
  } finally {
    if (stdin.isTTY) stdin.setRawMode(false);
    stdin.pause();
    await web?.close();
    linux.close();
  }
}

/** `--disk PATH[,ro]` as a disk. */
function diskOption(value: string): DiskOptions {
  const ro = value.endsWith(',ro');
  return { path: ro ? value.slice(0, -3) : value, readOnly: ro };
}

/** `--net tap=NAME[,mac=MAC]` as an interface. */
function netOption(value: string): NetOptions {
  const fields = Object.fromEntries(value.split(',').map((f) => f.split('=') as [string, string]));
  if (!fields.tap) throw new VcpuError('EINVAL', 'boot', `--net takes tap=NAME[,mac=MAC], got '${value}'`);
  return fields.mac ? { tap: fields.tap, mac: fields.mac } : { tap: fields.tap };
}

/** `--vsock CID[,UDS]` as the vsock option. */
function vsockOption(value: string): VsockOptions {
  const [cid, ...uds] = value.split(',');
  return uds.length > 0 ? { cid: Number(cid), uds: uds.join(',') } : { cid: Number(cid) };
}

/** `--gdb [HOST:]PORT` and `--gdb-nowait` as the stub's options. */
function gdbOptions(values: { gdb?: string; 'gdb-nowait'?: boolean }): GdbServerOptions | undefined {
  if (values.gdb === undefined) return undefined;
  return { ...address('--gdb', values.gdb), wait: !values['gdb-nowait'] };
}

/** `--web`/`--gdb [HOST:]PORT` as options (an IPv6 host goes in brackets). */
function address(option: string, value: string): { host?: string; port: number } {
  const m = /^(?:\[([^\]]+)\]:|([^:]+):)?(\d+)$/.exec(value);
  if (!m) throw new VcpuError('EINVAL', 'boot', `${option} takes [HOST:]PORT, got '${value}'`);
  const host = m[1] ?? m[2];
  return host === undefined ? { port: Number(m[3]) } : { host, port: Number(m[3]) };
}

/** `build-guest a.c [b.c …] -o fn.elf [-- flags]`. */
function buildGuestCommand(argv: string[]): number {
  const dash = argv.indexOf('--');
  const flags = dash < 0 ? [] : argv.slice(dash + 1);
  const { values, positionals } = parseArgs({
    args: dash < 0 ? argv : argv.slice(0, dash),
    options: { output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.output || positionals.length === 0) {
    process.stderr.write(`vcpu: build-guest takes sources and -o OUTPUT\n\n${USAGE}\n`);
    return 2;
  }
  buildGuest(positionals, values.output, flags);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'boot' && command !== 'restore' && command !== 'build-guest') {
    process.stderr.write(`vcpu: unknown command '${command}'\n\n${USAGE}\n`);
    return 2;
  }
  try {
    if (command === 'build-guest') return buildGuestCommand(rest);
    return await (command === 'boot' ? boot(rest) : restore(rest));
  } catch (e) {
    const usage = (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`vcpu: ${e instanceof VcpuError || usage ? (e as Error).message : String(e)}\n`);
    return usage ? 2 : 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
