/**
 * The kernel file a distribution ships, made loadable: arm64 kernels often come gzip
 * compressed (`Image.gz`) or as an EFI zboot image (a PE stub whose payload is the
 * compressed `Image`), which a bootloader would unpack. x86 bzImages unpack themselves.
 * @internal
 * @packageDocumentation
 */
import { gunzipSync } from 'node:zlib';

import { VcpuError } from './errors';

/** The most an unpacked kernel may be: bounds what a forged file can make us allocate. */
export const MAX_KERNEL_SIZE = 512 << 20;

const isGzip = (b: Uint8Array) => b.length > 2 && b[0] === 0x1f && b[1] === 0x8b;

function gunzip(op: string, bytes: Uint8Array): Uint8Array {
  try {
    return gunzipSync(bytes, { maxOutputLength: MAX_KERNEL_SIZE });
  } catch (e) {
    throw new VcpuError('EINVAL', op, `${op}: the kernel is gzip data that does not unpack: ${(e as Error).message}`);
  }
}

/**
 * The bytes to load: gzip unpacked; an EFI zboot image's gzip payload unpacked (a zstd
 * one is refused with `ENOTSUP`, Node has no zstd); anything else as it is.
 */
export function loadableKernel(op: string, bytes: Uint8Array): Uint8Array {
  if (isGzip(bytes)) return gunzip(op, bytes);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // EFI zboot: "MZ", "zimg" at 4, payload offset and size at 8 and 12, the compression
  // name at 24 (linux/drivers/firmware/efi/libstub/zboot-header.S).
  if (view.length >= 32 && view.toString('latin1', 0, 2) === 'MZ' && view.toString('latin1', 4, 8) === 'zimg') {
    const offset = view.readUInt32LE(8);
    const size = view.readUInt32LE(12);
    const method = view.toString('latin1', 24, 32).replace(/\0.*$/s, '');
    if (offset + size > view.length) {
      throw new VcpuError('EINVAL', op, `${op}: the zboot kernel's payload runs past the file's end`);
    }
    if (method !== 'gzip') {
      throw new VcpuError('ENOTSUP', op, `${op}: the zboot kernel is ${method}-compressed; unpack it first`);
    }
    return gunzip(op, view.subarray(offset, offset + size));
  }
  return bytes;
}
