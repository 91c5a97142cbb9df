// Shared set-up for the real-guest tests: guests from guests/, a VM with 2 MiB of RAM
// at 0, and a watchdog that kicks a vcpu that does not exit in time.
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { Kvm, type IoParams, type Vcpu, type VcpuError, type Vm, type VmOptions } from '../ts';

/** `describe`, skipped when the user opted out of KVM tests (VCPU_SKIP_KVM=1). */
export const describeKvm: jest.Describe = process.env.VCPU_KVM_SKIPPED === '1' ? describe.skip : describe;

// The set-up child processes share (boot.js): one definition of how a guest starts.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const boot = require('./boot') as {
  LOAD_ADDR: number;
  guest: (name: string) => Uint8Array;
  longMode: (kvm: typeof Kvm, name: string, options?: VmOptions) => { vm: Vm; vcpu: Vcpu };
};

export const LOAD_ADDR = boot.LOAD_ADDR;

/** The assembled bytes of guests/<name>.bin. */
export const guest = boot.guest;

/** A VM with RAM at [0, 2 MiB) holding guest `name` at 0x1000, vcpu 0 in long mode. */
export function longMode(name: string, options?: VmOptions): { vm: Vm; vcpu: Vcpu } {
  return boot.longMode(Kvm, name, options);
}

/**
 * Starts a worker that kicks `vcpu` after `ms` milliseconds (a run that never exits
 * then returns `Intr` instead of hanging the test). Resolves once the worker is ready;
 * `stop()` ends it.
 */
export async function watchdog(vcpu: Vcpu, ms: number): Promise<{ stop: () => Promise<void>; kicked: () => boolean }> {
  const signal = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(
    `
    const { workerData, parentPort } = require('node:worker_threads');
    const { VcpuSignalHandle } = require(workerData.pkg);
    const handle = VcpuSignalHandle.from(workerData.handle);
    parentPort.postMessage('ready');
    // Sleeps until told to stop or the time is up; kicks in the second case.
    if (Atomics.wait(workerData.signal, 0, 0, workerData.ms) === 'timed-out') {
      Atomics.store(workerData.signal, 1, 1);
      handle.signalImmediateExit();
    }
    `,
    { eval: true, workerData: { pkg: join(__dirname, '..', 'dist'), handle: vcpu.signalHandle(), ms, signal } },
  );
  await new Promise((resolve) => worker.once('message', resolve));
  return {
    stop: async () => {
      Atomics.store(signal, 0, 1);
      Atomics.notify(signal, 0);
      await worker.terminate();
    },
    kicked: () => Atomics.load(signal, 1) === 1,
  };
}

/** Runs with a watchdog of `ms`: a guest that never exits gives `Intr`. */
export async function runBounded(vcpu: Vcpu, ms = 10000) {
  const dog = await watchdog(vcpu, ms);
  try {
    return vcpu.run();
  } finally {
    await dog.stop();
  }
}

/**
 * An I/O handler for the demo guest (`guests/hello.asm`): collects its greeting from
 * port 0x3f8 and the hypercall answer it reports on port 0x3f9 (two dwords, low first).
 */
export function helloDevice(): { io: (p: IoParams) => void; text: () => string; answer: () => bigint } {
  let text = '';
  let answer = 0n;
  let shift = 0n;
  return {
    io: (p) => {
      if (p.address === 0x3f8) text += String.fromCharCode(p.data[0]);
      if (p.address === 0x3f9) {
        answer |= BigInt(Buffer.from(p.data).readUInt32LE(0)) << shift;
        shift += 32n;
      }
    },
    text: () => text,
    answer: () => answer,
  };
}

/** The error `f` throws (the test fails if it throws none). */
export function thrown<E = VcpuError>(f: () => unknown): E {
  try {
    f();
  } catch (e) {
    return e as E;
  }
  throw new Error('it did not throw');
}
