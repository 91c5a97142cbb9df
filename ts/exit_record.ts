/**
 * The vcpu's exit record, read in place: typed-array views of `vcpu_kvm::ExitRecord`,
 * whose layout (and the exit kinds' codes) comes from Rust (`exit_layout.ts`, generated from the binary), so nothing
 * here repeats it. The indices are `const enum`s: the per-exit path reads numbers, not
 * a layout object.
 * @internal
 * @packageDocumentation
 */
import { VcpuError } from './errors';
import { LAYOUT, Offset, Size } from './exit_layout';
import native, { EXIT_KINDS } from './native';

{
  // The binary must write the record this facade was built to read.
  const loaded = native.exitRecordLayout();
  const kinds = Object.fromEntries(EXIT_KINDS.map((kind, code) => [kind, code]));
  const same = (a: Record<string, number>, b: Record<string, number>) =>
    Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v);
  if (
    loaded.size !== LAYOUT.size ||
    !same(loaded.offsets, LAYOUT.offsets) ||
    !same(loaded.sizes, LAYOUT.sizes) ||
    !same(loaded.pending, LAYOUT.pending) ||
    !same(kinds, LAYOUT.kinds)
  ) {
    throw new VcpuError(
      'ENOTSUP',
      'load',
      "the native binary's exit record differs from the one this package was built for: build both again (npm run build)",
    );
  }
}

/** Field indices: a 32-bit field's in `words`, a 64-bit field's in `big`. */
export const enum Field {
  kind = Offset.kind / 4,
  pending = Offset.pending / 4,
  size = Offset.size / 4,
  remaining = Offset.remaining / 4,
  isWrite = Offset.isWrite / 4,
  dataOffset = Offset.dataOffset / 4,
  seq = Offset.seq / 4,
  answered = Offset.answered / 4,
  /** The address as two 32-bit halves, low first. */
  address = Offset.address / 4,
  /** The low halves of the counts, read without bigints. */
  argCountLow = Offset.argCount / 4,
  resultCountLow = Offset.resultCount / 4,
  hypercallId = Offset.hypercallId / 8,
  argCount = Offset.argCount / 8,
  args = Offset.args / 8,
  resultCount = Offset.resultCount / 8,
  results = Offset.results / 8,
  msrIndex = Offset.msrIndex / 8,
  msrData = Offset.msrData / 8,
  msrWrite = Offset.msrWrite / 8,
  msrFault = Offset.msrFault / 8,
}

/** Most results a hypercall has (the field's size in 64-bit words). */
export const enum Limit {
  results = Size.results / 8,
}

/** One vcpu's record: the memory the native vcpu writes, and two views of it. */
export class ExitRecord {
  readonly big: BigUint64Array;
  readonly words: Uint32Array;

  constructor() {
    this.big = new BigUint64Array(Math.ceil(LAYOUT.size / 8));
    this.words = new Uint32Array(this.big.buffer);
  }

  /** The access's address (below 2^53: ports and guest physical addresses are). */
  get address(): number {
    const high = this.words[Field.address + 1];
    const low = this.words[Field.address];
    return high === 0 ? low : low + high * 0x1_0000_0000;
  }
}
