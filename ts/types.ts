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

/** Exit kinds that carry nothing beyond their `kind`. */
export type PlainExitKind =
  | 'Io'
  | 'Mmio'
  | 'Hypercall'
  | 'Hlt'
  | 'Shutdown'
  | 'Intr'
  | 'SystemEventShutdown'
  | 'SystemEventReset'
  | 'SystemEventCrash'
  | 'IrqWindowOpen'
  | 'SetTpr'
  | 'TprAccess'
  | 'BusLock';

/**
 * Why `run()` returned: a union discriminated on `kind`, with crosvm's variant names.
 * `Intr` is an interrupted run (immediate exit or a signal handle).
 *
 * @example
 * ```ts
 * const exit = vcpu.run();
 * switch (exit.kind) {
 *   case 'Io': vcpu.handleIo(onIo); break;
 *   case 'FailEntry': throw new Error(`entry failed: ${exit.hardwareEntryFailureReason}`);
 * }
 * ```
 */
export type VcpuExit =
  | {
      /** An exit that carries nothing else. */
      readonly kind: PlainExitKind;
    }
  | {
      /** The hardware refused to enter the guest. */
      readonly kind: 'FailEntry';
      /** The hardware's reason code. */
      readonly hardwareEntryFailureReason: bigint;
    }
  | {
      /** KVM could not go on (often an instruction its emulator does not handle). */
      readonly kind: 'InternalError';
      /** KVM's `KVM_INTERNAL_ERROR_*` sub-code. */
      readonly suberror: number;
    }
  | {
      /** An exception KVM passes to userspace. */
      readonly kind: 'Exception';
      /** The vector. */
      readonly exception: number;
      /** The error code. */
      readonly errorCode: number;
    }
  | {
      /** Single step or breakpoint (see `setGuestDebug`). */
      readonly kind: 'Debug';
      /** The vector (1 = #DB, 3 = #BP). */
      readonly exception: number;
      /** The guest's instruction pointer. */
      readonly pc: bigint;
      /** Debug status. */
      readonly dr6: bigint;
      /** Debug control. */
      readonly dr7: bigint;
    }
  | {
      /** The in-kernel IOAPIC needs an EOI for a level-triggered vector. */
      readonly kind: 'IoapicEoi';
      /** The vector. */
      readonly vector: number;
    }
  | {
      /** `rdmsr`/`wrmsr` forwarded to userspace. */
      readonly kind: 'MsrAccess';
      /** The MSR number. */
      readonly index: number;
      /** The value written (or read). */
      readonly data: bigint;
      /** True for `wrmsr`. */
      readonly write: boolean;
    }
  | {
      /** Any other KVM exit reason. */
      readonly kind: 'Unknown';
      /** The raw `kvm_run.exit_reason`. */
      readonly reason: number;
    };

/** Any exit kind. */
export type VcpuExitKind = VcpuExit['kind'];

/** A 64-bit register value: a `bigint`, or a non-negative safe-integer `number`. */
export type RegValue = bigint | number;
