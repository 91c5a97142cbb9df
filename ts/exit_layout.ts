/**
 * The exit record's layout, generated from `vcpu_kvm::ExitRecord` by
 * `scripts/exit-layout.js` (`npm run build:ts` writes it, `npm run lint` checks it):
 * do not edit.
 * @internal
 * @packageDocumentation
 */

/** Byte offset of each field. */
export const enum Offset {
  kind = 0,
  pending = 4,
  size = 8,
  remaining = 12,
  isWrite = 16,
  dataOffset = 20,
  seq = 24,
  answered = 28,
  address = 32,
  hypercallId = 40,
  argCount = 48,
  args = 56,
  resultCount = 104,
  results = 112,
  msrIndex = 144,
  msrData = 152,
  msrWrite = 160,
  msrFault = 168,
}

/* eslint-disable @typescript-eslint/no-duplicate-enum-values -- many fields are as wide as others */
/** Size in bytes of each field. */
export const enum Size {
  kind = 4,
  pending = 4,
  size = 4,
  remaining = 4,
  isWrite = 4,
  dataOffset = 4,
  seq = 4,
  answered = 4,
  address = 8,
  hypercallId = 8,
  argCount = 8,
  args = 48,
  resultCount = 8,
  results = 32,
  msrIndex = 8,
  msrData = 8,
  msrWrite = 8,
  msrFault = 8,
}
/* eslint-enable @typescript-eslint/no-duplicate-enum-values */

/** The values of the `pending` field (`vcpu_kvm::Pending`). */
export const enum Pending {
  None = 0,
  Io = 1,
  Mmio = 2,
  Hypercall = 3,
  Msr = 4,
  Handling = 5,
}

/** Each exit kind's code (`VcpuExit::index`), as the record's `kind` field holds it. */
export const enum Code {
  Io = 0,
  Mmio = 1,
  Hypercall = 2,
  Hlt = 3,
  Shutdown = 4,
  Intr = 5,
  FailEntry = 6,
  InternalError = 7,
  SystemEventShutdown = 8,
  SystemEventReset = 9,
  SystemEventCrash = 10,
  Exception = 11,
  Debug = 12,
  IrqWindowOpen = 13,
  IoapicEoi = 14,
  SetTpr = 15,
  TprAccess = 16,
  BusLock = 17,
  MsrAccess = 18,
  Unknown = 19,
}

/** What this file was generated from, for the check when the binary loads. */
export const LAYOUT = {
  size: 176,
  offsets: {
    kind: 0,
    pending: 4,
    size: 8,
    remaining: 12,
    isWrite: 16,
    dataOffset: 20,
    seq: 24,
    answered: 28,
    address: 32,
    hypercallId: 40,
    argCount: 48,
    args: 56,
    resultCount: 104,
    results: 112,
    msrIndex: 144,
    msrData: 152,
    msrWrite: 160,
    msrFault: 168,
  },
  sizes: {
    kind: 4,
    pending: 4,
    size: 4,
    remaining: 4,
    isWrite: 4,
    dataOffset: 4,
    seq: 4,
    answered: 4,
    address: 8,
    hypercallId: 8,
    argCount: 8,
    args: 48,
    resultCount: 8,
    results: 32,
    msrIndex: 8,
    msrData: 8,
    msrWrite: 8,
    msrFault: 8,
  },
  pending: { None: 0, Io: 1, Mmio: 2, Hypercall: 3, Msr: 4, Handling: 5 },
  kinds: {
    Io: 0,
    Mmio: 1,
    Hypercall: 2,
    Hlt: 3,
    Shutdown: 4,
    Intr: 5,
    FailEntry: 6,
    InternalError: 7,
    SystemEventShutdown: 8,
    SystemEventReset: 9,
    SystemEventCrash: 10,
    Exception: 11,
    Debug: 12,
    IrqWindowOpen: 13,
    IoapicEoi: 14,
    SetTpr: 15,
    TprAccess: 16,
    BusLock: 17,
    MsrAccess: 18,
    Unknown: 19,
  },
};

/** Exit kinds that carry nothing beyond their `kind`: Io, Mmio, Hypercall, Hlt, Shutdown, Intr, SystemEventShutdown, SystemEventReset, SystemEventCrash, IrqWindowOpen, SetTpr, TprAccess, BusLock. */
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
 * Why `run()` returned: a union discriminated on `kind`, with crosvm's variant names
 * (generated from the Rust `VcpuExit`). `Intr` is an interrupted run (immediate exit or
 * a signal handle).
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
      /** The exception vector. */
      readonly exception: number;
      /** The error code. */
      readonly errorCode: number;
    }
  | {
      /** A debug exit (single step or breakpoint set with `set_guest_debug`). */
      readonly kind: 'Debug';
      /** The exception vector (1 = #DB, 3 = #BP). */
      readonly exception: number;
      /** The guest's instruction pointer. */
      readonly pc: bigint;
      /** The debug status register. */
      readonly dr6: bigint;
      /** The debug control register. */
      readonly dr7: bigint;
    }
  | {
      /** The in-kernel IOAPIC needs an EOI for a level-triggered vector (split irqchip). */
      readonly kind: 'IoapicEoi';
      /** The vector. */
      readonly vector: number;
    }
  | {
      /** `rdmsr`/`wrmsr` forwarded to userspace (`KVM_CAP_X86_USER_SPACE_MSR`). */
      readonly kind: 'MsrAccess';
      /** The MSR number. */
      readonly index: number;
      /** The value written, or the value the guest reads (0 unless set). */
      readonly data: bigint;
      /** True for `wrmsr`. */
      readonly write: boolean;
    }
  | {
      /** Any other KVM exit reason, raw. Never a panic. */
      readonly kind: 'Unknown';
      /** `kvm_run.exit_reason`. */
      readonly reason: number;
    };

/** Any exit kind. */
export type VcpuExitKind = VcpuExit['kind'];

/** The kinds whose exits carry a payload (read with `lastExit`). */
export const PAYLOAD_KINDS: readonly string[] = [
  'FailEntry',
  'InternalError',
  'Exception',
  'Debug',
  'IoapicEoi',
  'MsrAccess',
  'Unknown',
];
