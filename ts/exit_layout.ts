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
