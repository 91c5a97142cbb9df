/**
 * The data types of the API: accesses, exits, register state.
 * @packageDocumentation
 */

export type {
  Regs,
  Sregs,
  Segment,
  DTable,
  Fpu,
  Msr,
  Lapic,
  DebugRegs,
  Xcr,
  GuestDebug,
  VcpuEvents,
  ExceptionEvent,
  InterruptEvent,
  NmiEvent,
  SmiEvent,
  CpuidEntry,
} from '../native/index';

/**
 * One port (`Io`) or MMIO access, as crosvm's `IoParams`. The object and its `data`
 * view are reused from exit to exit: read them inside the handler, copy what you keep.
 *
 * @example
 * ```ts
 * vcpu.handleIo((p) => {
 *   if (p.operation === 'write') console.log(p.address, p.data[0]);
 *   else p.data[0] = 0x42; // what the guest's `in` reads
 * });
 * ```
 */
export interface IoParams {
  /** Port number (`Io`) or guest physical address (`Mmio`). */
  address: number;
  /** Access width in bytes; equals `data.length`. */
  size: 1 | 2 | 4 | 8;
  /** `'write'`: the guest wrote `data`. `'read'`: fill `data` (little-endian). */
  operation: 'read' | 'write';
  /** The bytes written, or the bytes to return (zero unless the handler sets them). */
  data: Uint8Array;
}

/** A handler for `Io` or `Mmio` exits. */
export type IoHandler = (params: IoParams) => void;

// The exits are defined once, in Rust (`VcpuExit`); their types are generated.
export type { PlainExitKind, VcpuExit, VcpuExitKind } from './exit_layout';

/** A 64-bit register value: a `bigint`, or a non-negative safe-integer `number`. */
export type RegValue = bigint | number;
