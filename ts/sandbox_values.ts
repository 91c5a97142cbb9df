/**
 * The values a sandbox call carries, as the guest SDK lays them out
 * (`guests/sdk/vcpu_guest.h`): 16-byte `vcpu_value`s (type, length, payload), strings
 * and bytes in a data area after them. Everything read from the guest is bounded by
 * what it may address before anything is allocated for it.
 * @internal
 * @packageDocumentation
 */
import { VcpuError } from './errors';

/** What a sandbox function takes and returns. */
export type SandboxValue = number | bigint | string | Uint8Array | boolean | undefined;

/** The machine's fixed addresses (`crates/vcpu-kvm/src/arch/x86_64/sandbox.rs`). */
export const MAILBOX = 0x10_0000;
export const MAILBOX_SIZE = 0x10_0000;
/** The mailbox header's fields (see `struct vcpu_mailbox` in `guests/sdk/runtime.c`). */
export const HEADER = {
  magic: 0,
  exports: 8,
  exportCount: 16,
  cmd: 20,
  index: 24,
  argc: 28,
  args: 32,
  returned: 48,
  size: 64,
};
export const MAGIC = 0x3158425355504356n; // "VCPUSBX1"
export const CMD_CALL = 1;
export const CMD_RESULT = 2;
export const HC = {
  ready: 0x5342_0001n,
  return: 0x5342_0002n,
  hostCall: 0x5342_0003n,
  fault: 0x5342_0004n,
  wait: 0x5342_0005n,
};
/** Arguments a call or a host call may have: the guest's accessors read this many. */
export const MAX_ARGS = 16;

const VALUE = 16;
const enum Type {
  Void,
  I64,
  F64,
  Bool,
  Str,
  Bytes,
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/**
 * `values` laid out for the guest at guest address `at`: MAX_ARGS values (void past
 * the last), then each string (NUL-terminated) and byte array, 8-aligned. `room` bounds
 * the frame; `op` names the caller in errors.
 */
export function encodeFrame(op: string, values: readonly SandboxValue[], at: number, room: number): Uint8Array {
  if (values.length > MAX_ARGS) {
    throw new VcpuError('EINVAL', op, `${op}: ${values.length} values; a sandbox call takes at most ${MAX_ARGS}`);
  }
  const data = values.map((v, i) => payloadBytes(op, v, i));
  let size = MAX_ARGS * VALUE;
  for (const d of data) if (d) size += (d.length + 8) & ~7;
  if (size > room) {
    throw new VcpuError('E2BIG', op, `${op}: the values take ${size} bytes; the sandbox's mailbox has ${room} left`);
  }
  const frame = new Uint8Array(size);
  const view = new DataView(frame.buffer);
  let next = MAX_ARGS * VALUE;
  values.forEach((v, i) => {
    const o = i * VALUE;
    const d = data[i];
    if (d) {
      view.setUint32(o, v instanceof Uint8Array ? Type.Bytes : Type.Str, true);
      view.setUint32(o + 4, typeof v === 'string' ? d.length - 1 : d.length, true);
      view.setBigUint64(o + 8, BigInt(at + next), true);
      frame.set(d, next);
      next += (d.length + 8) & ~7;
    } else if (typeof v === 'number') {
      view.setUint32(o, Type.F64, true);
      view.setFloat64(o + 8, v, true);
    } else if (typeof v === 'bigint') {
      view.setUint32(o, Type.I64, true);
      view.setBigInt64(o + 8, BigInt.asIntN(64, v), true);
    } else if (typeof v === 'boolean') {
      view.setUint32(o, Type.Bool, true);
      view.setBigInt64(o + 8, v ? 1n : 0n, true);
    }
  });
  return frame;
}

/** A string's UTF-8 with its NUL, a byte array, or null for the other types (checked). */
function payloadBytes(op: string, v: unknown, i: number): Uint8Array | null {
  if (typeof v === 'string') return utf8.encode(v + '\0');
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'bigint' && (v < -(1n << 63n) || v >= 1n << 64n)) {
    throw new VcpuError('EINVAL', op, `${op}: value ${i} (${v}) does not fit in 64 bits`);
  }
  if (v === undefined || v === null || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') {
    return null;
  }
  throw new VcpuError(
    'EINVAL',
    op,
    `${op}: value ${i} is ${typeof v === 'object' ? 'an object' : `a ${typeof v}`}; sandboxes take number, bigint, string, Uint8Array, boolean or undefined`,
  );
}

/** A copy of guest memory at `gpa`; throws (EFAULT) outside RAM. */
export type ReadGuest = (gpa: number, length: number) => Uint8Array;

/**
 * The `count` values at guest address `at`, decoded. A string or byte array is read
 * from where the guest says, within `budget` bytes in all (the guest's RAM: it cannot
 * make the host allocate more than it can name).
 */
export function decodeValues(op: string, read: ReadGuest, at: number, count: number, budget: number): SandboxValue[] {
  const raw = read(at, count * VALUE);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const values: SandboxValue[] = [];
  let left = budget;
  for (let i = 0; i < count; i++) {
    const o = i * VALUE;
    const type = view.getUint32(o, true);
    const len = view.getUint32(o + 4, true);
    switch (type) {
      case Type.Void:
        values.push(undefined);
        break;
      case Type.I64:
        values.push(view.getBigInt64(o + 8, true));
        break;
      case Type.F64:
        values.push(view.getFloat64(o + 8, true));
        break;
      case Type.Bool:
        values.push(view.getBigInt64(o + 8, true) !== 0n);
        break;
      case Type.Str:
      case Type.Bytes: {
        if (len > left) {
          throw new VcpuError(
            'EFAULT',
            op,
            `${op}: the guest names ${len} bytes, more than its ${budget} bytes of RAM`,
          );
        }
        left -= len;
        const ptr = view.getBigUint64(o + 8, true);
        const bytes = len === 0 ? new Uint8Array(0) : read(checkedAddress(op, ptr), len);
        values.push(type === Type.Str ? fromUtf8.decode(bytes) : bytes);
        break;
      }
      default:
        throw new VcpuError('EINVAL', op, `${op}: the guest passed a value of unknown type ${type}`);
    }
  }
  return values;
}

/** A guest address as a number, or EFAULT if it could not be in guest RAM. */
export function checkedAddress(op: string, address: bigint): number {
  if (address >= 1n << 52n) {
    throw new VcpuError('EFAULT', op, `${op}: the guest named address 0x${address.toString(16)}, outside its memory`);
  }
  return Number(address);
}
