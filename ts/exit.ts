/**
 * From native exit codes to `VcpuExit` objects, without allocating on the hot path.
 * @internal
 * @packageDocumentation
 */
import { call } from './errors';
import { PAYLOAD_KINDS } from './exit_layout';
import { EXIT_KINDS, type NativeVcpu } from './native';
import type { VcpuExit } from './types';

const PAYLOAD = new Set(PAYLOAD_KINDS);

/**
 * The kind names as internalized strings (a property key is one), so that a user's
 * `exit.kind === 'Io'` compares pointers instead of characters.
 */
const KINDS = EXIT_KINDS.map((kind) => Object.keys({ [kind]: 0 })[0]);

/** One frozen object per payload-free kind, shared by every exit of that kind. */
const PLAIN: (VcpuExit | undefined)[] = KINDS.map((kind) =>
  PAYLOAD.has(kind) ? undefined : (Object.freeze({ kind }) as VcpuExit),
);

/** The exit for `code`, reading the payload from the vcpu only for kinds that have one. */
export function exitFor(code: number, vcpu: NativeVcpu): VcpuExit {
  const plain = PLAIN[code];
  return plain !== undefined ? plain : exitWithPayload(vcpu);
}

/** The last exit with its payload, as the vcpu describes it (`ECLOSED` once it is closed). */
function exitWithPayload(vcpu: NativeVcpu): VcpuExit {
  return Object.freeze(call('lastExit', () => vcpu.lastExit())) as VcpuExit;
}
