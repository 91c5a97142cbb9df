/**
 * The native addon, loaded by the napi-rs platform loader (`native/index.js`), which
 * picks the prebuilt binary for this platform or names the platform it has none for.
 * @internal
 * @packageDocumentation
 */
import { isMainThread } from 'node:worker_threads';

import { VcpuError } from './errors';

function load(): typeof import('../native/index') {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../native/index.js');
  } catch (e) {
    const platform = `${process.platform}-${process.arch}`;
    throw new VcpuError(
      'ENOTSUP',
      'load',
      `vcpu has no native binary for ${platform} (${(e as Error).message}). ` +
        'Prebuilt binaries: linux-x64-gnu (linux-x64-musl and linux-arm64-gnu are planned). ' +
        'To build from source, install a Rust toolchain and run `npm run build` in the package directory.',
    );
  }
}

const native = load();

export default native;

// On process exit Node joins its worker threads: kick every vcpu first, so none stays
// inside a guest that never exits. (Only the main thread sees 'exit' for the process.)
if (isMainThread) process.once('exit', () => native.shutdown());
export type {
  NativeKvm,
  NativeVm,
  NativeVcpu,
  NativeDevices,
  NativeVirtioDevice,
  LinuxBootInfo,
} from '../native/index';

/** The exit kind names, indexed by the codes `NativeVcpu.run()` returns. */
export const EXIT_KINDS: readonly string[] = Object.freeze(native.exitKinds());
