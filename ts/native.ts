/**
 * The native addon, loaded by the napi-rs platform loader (`native/index.js`), which
 * picks the prebuilt binary for this platform or names the platform it has none for.
 * @internal
 * @packageDocumentation
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const native: typeof import('../native/index') = require('../native/index.js');

export default native;

// On process exit Node joins its worker threads: kick every vcpu first, so none stays
// inside a guest that never exits. (Only the main thread sees 'exit' for the process.)
if (require('node:worker_threads').isMainThread) process.once('exit', () => native.shutdown());
export type {
  NativeKvm,
  NativeVm,
  NativeVcpu,
  ExitDetail,
} from '../native/index';

/** The exit kind names, indexed by the codes `NativeVcpu.run()` returns. */
export const EXIT_KINDS: readonly string[] = Object.freeze(native.exitKinds());
