/**
 * `npx vcpu build-guest a.c [b.c …] -o fn.elf`: compiles sandbox guest sources with gcc
 * or clang, freestanding, and links them with the SDK's runtime (`guests/sdk/`) at the
 * sandbox's load address.
 * @internal
 * @packageDocumentation
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { VcpuError } from './errors';

/** The SDK's directory: `vcpu_guest.h`, `runtime.c`, `sandbox.ld`. */
export const SDK_DIR = join(__dirname, '..', 'guests', 'sdk');

/**
 * The flags a sandbox guest is built with. No stack protector (it would read a canary
 * through FS, which the guest does not have), no SSE beyond the x86-64 baseline (the
 * guest's CPU state enables SSE, not AVX), no position independence (it is linked at
 * its load address).
 */
export const GUEST_CFLAGS = [
  '-ffreestanding',
  '-fno-pic',
  '-fno-pie',
  '-no-pie',
  '-nostdlib',
  '-static',
  '-O2',
  '-march=x86-64',
  '-fno-stack-protector',
  '-fno-asynchronous-unwind-tables',
  '-fcf-protection=none',
];

/** The first of `$CC`, gcc and clang that runs. */
export function findCompiler(): string {
  const candidates = [process.env.CC, 'gcc', 'clang'].filter((c): c is string => !!c);
  for (const cc of candidates) {
    if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0) return cc;
  }
  throw new VcpuError(
    'ENOENT',
    'build-guest',
    'build-guest: needs a C compiler: install gcc or clang (Debian: apt install gcc), or set CC',
  );
}

/**
 * Compiles and links `sources` into the ELF `output`; extra `flags` go to the
 * compiler. Throws with the compiler's own messages when it fails.
 *
 * @example
 * ```ts
 * buildGuest(['plugin.c'], 'plugin.elf');
 * ```
 */
export function buildGuest(sources: readonly string[], output: string, flags: readonly string[] = []): void {
  if (sources.length === 0) throw new VcpuError('EINVAL', 'build-guest', 'build-guest: no source files');
  const cc = findCompiler();
  const args = [
    ...GUEST_CFLAGS,
    `-I${SDK_DIR}`,
    ...flags,
    `-Wl,-T,${join(SDK_DIR, 'sandbox.ld')}`,
    '-Wl,-z,max-page-size=4096',
    '-Wl,--build-id=none',
    '-o',
    output,
    ...sources,
    join(SDK_DIR, 'runtime.c'),
  ];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new VcpuError('EINVAL', 'build-guest', `build-guest: ${cc} failed:\n${r.stderr || r.error?.message || ''}`);
  }
}
