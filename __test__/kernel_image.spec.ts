// The kernel files distributions ship, unpacked before loading (ts/kernel_image.ts):
// gzip (arm64's Image.gz) and EFI zboot images with a gzip payload boot like the plain
// file; what cannot be unpacked is refused with a VcpuError saying why, before
// anything big is allocated.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { bootLinux, VcpuError } from '../ts';
import { loadableKernel, MAX_KERNEL_SIZE } from '../ts/kernel_image';
import { describeKvm, thrown } from './helpers';

const kernel = readFileSync(join(__dirname, '..', 'guests', 'test_kernel.bzImage'));

/** An EFI zboot image: "MZ", "zimg", payload offset and size, the compression name. */
function zboot(payload: Buffer, method = 'gzip', claimed = payload.length): Buffer {
  const head = Buffer.alloc(64);
  head.write('MZ', 0, 'latin1');
  head.write('zimg', 4, 'latin1');
  head.writeUInt32LE(64, 8);
  head.writeUInt32LE(claimed, 12);
  head.write(method, 24, 'latin1');
  return Buffer.concat([head, payload]);
}

async function output(k: Uint8Array): Promise<string> {
  const linux = bootLinux({ kernel: k, memory: '64M', cmdline: 'console=ttyS0' });
  const chunks: Buffer[] = [];
  linux.output.on('data', (c: Buffer) => chunks.push(c));
  await linux.start();
  linux.close();
  return Buffer.concat(chunks).toString();
}

describe('kernel images', () => {
  test('gzip and gzip zboot unpack to the same bytes; anything else is left as it is', () => {
    expect(Buffer.from(loadableKernel('t', gzipSync(kernel)))).toEqual(kernel);
    expect(Buffer.from(loadableKernel('t', zboot(gzipSync(kernel))))).toEqual(kernel);
    expect(loadableKernel('t', kernel)).toBe(kernel);
  });

  test('what cannot be unpacked is refused, saying why', () => {
    const corrupt = gzipSync(kernel);
    corrupt.fill(0x55, 20, 200);
    expect(thrown<VcpuError>(() => loadableKernel('bootLinux', corrupt))).toMatchObject({
      code: 'EINVAL',
      message: expect.stringContaining('gzip'),
    });
    expect(thrown<VcpuError>(() => loadableKernel('bootLinux', zboot(gzipSync(kernel), 'zstd')))).toMatchObject({
      code: 'ENOTSUP',
      message: expect.stringContaining('zstd'),
    });
    expect(
      thrown<VcpuError>(() => loadableKernel('bootLinux', zboot(gzipSync(kernel), 'gzip', 1 << 30))),
    ).toMatchObject({ code: 'EINVAL', message: expect.stringContaining("past the file's end") });
  });

  test('a gzip bomb stops at the size limit instead of filling memory', () => {
    // A few hundred KiB of gzip members (gunzip joins them) that unpack past the limit.
    const member = gzipSync(Buffer.alloc(32 << 20), { level: 9 });
    const bomb = Buffer.concat(Array.from({ length: MAX_KERNEL_SIZE / (32 << 20) + 1 }, () => member));
    expect(bomb.length).toBeLessThan(1 << 20);
    expect(thrown<VcpuError>(() => loadableKernel('bootLinux', bomb))).toMatchObject({ code: 'EINVAL' });
  });
});

describeKvm('kernel images, booted', () => {
  test('a gzip-compressed kernel boots like the plain one', async () => {
    const plain = await output(kernel);
    expect(plain).toContain('vcpu-test-kernel');
    expect(await output(gzipSync(kernel))).toBe(plain);
  });
});
