// Opt-in (VCPU_LINUX_BOOT=1): a real Debian kernel (linux-image-amd64) with a busybox
// initramfs boots to init, which prints a marker and reboots through the i8042. Fetched
// with apt into .cache/linux/ by scripts/debian-linux.js. Seconds on hardware KVM; on
// a nested KVM that emulates guest kernel code it takes many minutes (see README).
import { join } from 'node:path';

import { bootLinux, DEFAULT_CMDLINE } from '../ts';

const describeLinux = process.env.VCPU_LINUX_BOOT === '1' ? describe : describe.skip;
const TIMEOUT_MS = Number(process.env.VCPU_LINUX_BOOT_TIMEOUT ?? 30 * 60) * 1000;

describeLinux('a Debian kernel', () => {
  test(
    'boots to init and powers off',
    async () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { prepare } = require(join(__dirname, '..', 'scripts', 'debian-linux.js'));
      const { kernelPath, vmlinuxPath, initrdPath, marker } = prepare();
      const linux = bootLinux({
        // The ELF vmlinux skips the decompressor; VCPU_LINUX_BZIMAGE=1 boots the bzImage.
        kernel: process.env.VCPU_LINUX_BZIMAGE === '1' ? kernelPath : vmlinuxPath,
        initrd: initrdPath,
        memory: '512M',
        // Features a KVM that emulates guest kernel code cannot emulate; harmless elsewhere.
        cmdline: `${DEFAULT_CMDLINE} rdinit=/init nokaslr clearcpuid=cx16,popcnt,smap noxsave`,
      });
      let text = '';
      linux.output.on('data', (c: Buffer) => (text += c));
      const watchdog = setTimeout(() => linux.stop(), TIMEOUT_MS - 10000);
      const exit = await linux.start();
      clearTimeout(watchdog);
      linux.close();
      expect(text).toContain('Linux version');
      expect(text).toContain(marker);
      expect(exit.kind).toBe('SystemEventReset');
    },
    TIMEOUT_MS,
  );
});
