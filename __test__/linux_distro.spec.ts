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
      const { kernelPath, initrdPath, marker } = prepare();
      const linux = bootLinux({
        kernel: kernelPath,
        initrd: initrdPath,
        memory: '512M',
        cmdline: `${DEFAULT_CMDLINE} rdinit=/init nokaslr`,
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
