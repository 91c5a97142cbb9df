/**
 * The vcpu's exit record, read in place: a typed-array view of `vcpu_kvm::ExitRecord`,
 * whose layout comes from Rust (`exitRecordLayout()`), so nothing here repeats it.
 * @internal
 * @packageDocumentation
 */
import native from './native';

const layout = native.exitRecordLayout();

/** A 32-bit field's index in a `Uint32Array` over the record. */
function u32(name: string): number {
  return layout.offsets[name] / 4;
}

/** A 64-bit field's index in a `BigUint64Array` over the record. */
function u64(name: string): number {
  return layout.offsets[name] / 8;
}

/** Field indices. */
export const FIELD = Object.freeze({
  kind: u32('kind'),
  pending: u32('pending'),
  size: u32('size'),
  remaining: u32('remaining'),
  isWrite: u32('isWrite'),
  dataOffset: u32('dataOffset'),
  /** The address as two 32-bit halves, low first. */
  address: u32('address'),
  hypercallId: u64('hypercallId'),
  argCount: u64('argCount'),
  args: u64('args'),
  resultCount: u64('resultCount'),
  results: u64('results'),
  msrIndex: u64('msrIndex'),
  msrData: u64('msrData'),
  msrWrite: u64('msrWrite'),
  msrFault: u64('msrFault'),
});

/** The values of the record's `pending` field (`vcpu_kvm::Pending`). */
export const PENDING = Object.freeze(
  layout.pending as Readonly<Record<'None' | 'Io' | 'Mmio' | 'Hypercall' | 'Msr' | 'Handling', number>>,
);

/** Most arguments and results a hypercall has (from the layout: the fields between). */
export const MAX_ARGS = FIELD.resultCount - FIELD.args;
export const MAX_RESULTS = FIELD.msrIndex - FIELD.results;

/** One vcpu's record: the memory the native vcpu writes, and two views of it. */
export class ExitRecord {
  readonly big: BigUint64Array;
  readonly words: Uint32Array;

  constructor() {
    this.big = new BigUint64Array(Math.ceil(layout.size / 8));
    this.words = new Uint32Array(this.big.buffer);
  }

  get pending(): number {
    return this.words[FIELD.pending];
  }

  set pending(value: number) {
    this.words[FIELD.pending] = value;
  }

  get address(): number {
    return this.words[FIELD.address] + this.words[FIELD.address + 1] * 0x1_0000_0000;
  }
}
