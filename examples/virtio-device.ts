// A virtio device written in TypeScript: it upper-cases what the driver sends. The
// guest is this package's virtio test guest (guests/virtio/virtio_test.c), booted as a
// kernel; it finds the device on its command line, sends "hello, device" and prints
// what came back. Run with `npm run example -- virtio-device`.
import { dirname, join } from 'node:path';

import { bootLinux, type VirtioDeviceSpec } from 'vcpu';

const GUEST = join(dirname(require.resolve('vcpu/package.json')), 'guests', 'virtio', 'virtio_test.elf');

/** The device: one queue; each request is a readable buffer and a writable one. */
export const upperCase: VirtioDeviceSpec = {
  type: 0x7fff, // an id no standard virtio device uses
  queues: [16],
  onNotify(queue) {
    for (let chain; (chain = queue.pop());) {
      const text = Buffer.concat(chain.readable).toString().toUpperCase();
      const out = chain.writable[0];
      const n = out.length ? Buffer.from(out.buffer, out.byteOffset, out.length).write(text) : 0;
      queue.push(chain, n);
    }
    queue.interrupt();
  },
};

export async function main(_argv: readonly string[] = [], log: (line: string) => void = console.log): Promise<void> {
  const linux = bootLinux({ kernel: GUEST, memory: '32M', cmdline: 'console=ttyS0', devices: [upperCase] });
  let out = '';
  linux.output.on('data', (d: Buffer) => (out += d.toString()));
  await linux.start();
  linux.close();
  for (const line of out.split('\n')) if (line.startsWith('echo device')) log(line);
}

if (require.main === module) void main();
