// Opt-in (VCPU_LINUX_BOOT=1): a real Debian kernel (linux-image-amd64) with a busybox
// initramfs boots to init, which prints a marker and reboots through the i8042. Fetched
// with apt into .cache/linux/ by scripts/debian-linux.js. Seconds on hardware KVM; on
// a nested KVM that emulates guest kernel code it takes minutes (see docs/linux.md).
import { join } from 'node:path';

import { bootLinux, DEFAULT_CMDLINE } from '../ts';
import { longMode, watchdog } from './helpers';

const describeLinux = process.env.VCPU_LINUX_BOOT === '1' ? describe : describe.skip;
const TIMEOUT_MS = Number(process.env.VCPU_LINUX_BOOT_TIMEOUT ?? 30 * 60) * 1000;

/**
 * What a KVM that emulates guest kernel code needs on the command line (docs/linux.md):
 * CPU features its emulator cannot run (cmpxchg16b, popcnt, clac/stac, xrstor, and the
 * SSE/AVX code the kernel picks when SSSE3/AVX are there), and two checks that take
 * minutes at emulation speed (the crypto self-tests, the W+X page-table walk). Harmless
 * on hardware KVM.
 */
const EMULATION_CMDLINE =
  'nokaslr noxsave clearcpuid=cx16,popcnt,smap,ssse3,avx,avx2,avx512f cryptomgr.notests rodata=off';

describeLinux('a Debian kernel', () => {
  // Every Linux program enters the kernel with `syscall`: a KVM that does not carry it
  // out cannot run user space, so say that here in a second instead of after the boot.
  test('a guest system call from user mode reaches kernel mode', async () => {
    const { vm, vcpu } = longMode('syscall');
    const dog = await watchdog(vcpu, 5000);
    let cs = -1;
    expect(vcpu.run().kind).toBe('Io');
    vcpu.handleIo((p) => (cs = p.data[0]));
    await dog.stop();
    vm.close();
    expect(cs).toBe(0x08); // kernel code; a selector with CPL 3: the vcpu stayed in user mode
  });

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
        cmdline: `${DEFAULT_CMDLINE} rdinit=/init ${EMULATION_CMDLINE}`,
      });
      let text = '';
      linux.output.on('data', (c: Buffer) => (text += c));
      const limit = setTimeout(() => linux.stop(), TIMEOUT_MS - 10000);
      const exit = await linux.start();
      clearTimeout(limit);
      linux.close();
      // In boot order, so a failure says how far the kernel got.
      expect(text).toContain('Linux version');
      expect(text).toContain('Run /init as init process');
      expect(text).toContain(marker);
      expect(exit.kind).toBe('SystemEventReset');
    },
    TIMEOUT_MS,
  );
});
