// Opt-in (VCPU_LINUX_BOOT=1): a real Debian kernel (linux-image-amd64) on the machine
// bootLinux builds, with real Linux drivers as the virtio devices' clients. Fetched and
// built with apt into .cache/linux/ by scripts/debian-linux.js. Seconds on hardware KVM;
// on a nested KVM that emulates guest kernel code it takes minutes (see docs/linux.md).
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bootLinux, DEFAULT_CMDLINE, LinuxMachine, LinuxOptions, VcpuExit } from '../ts';
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

interface Prepared {
  kernelPath: string;
  vmlinuxPath: string;
  initrdPath: string;
  diskPath: string;
  marker: string;
  diskText: string;
  vsock: { port: number; message: string };
}

function prepare(): Prepared {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(join(__dirname, '..', 'scripts', 'debian-linux.js')).prepare();
}

/** The code selector a user-mode `syscall` lands on: 0x08 when the kernel gets it. */
const KERNEL_CS = 0x08;
let syscallLanding: Promise<number> | undefined;

/**
 * The code selector a guest `syscall` from user mode reaches here (guests/syscall.asm).
 * Every Linux program enters the kernel with it: a KVM that does not carry it out (the
 * vcpu stays at CPL 3) cannot run user space, so the cases that need a userland say so
 * at once instead of after the boot.
 */
function syscallLandsOn(): Promise<number> {
  syscallLanding ??= (async () => {
    const { vm, vcpu } = longMode('syscall');
    const dog = await watchdog(vcpu, 5000);
    let cs = -1;
    if (vcpu.run().kind === 'Io') vcpu.handleIo((p) => (cs = p.data[0]));
    await dog.stop();
    vm.close();
    return cs;
  })();
  return syscallLanding;
}

/** Boots the Debian kernel; `until` on the console stops it early. */
async function boot(
  p: Prepared,
  options: Partial<LinuxOptions>,
  until?: RegExp,
  onMachine?: (linux: LinuxMachine) => void,
): Promise<{ exit: VcpuExit; text: string }> {
  const linux = bootLinux({
    // The ELF vmlinux skips the decompressor; VCPU_LINUX_BZIMAGE=1 boots the bzImage.
    kernel: process.env.VCPU_LINUX_BZIMAGE === '1' ? p.kernelPath : p.vmlinuxPath,
    initrd: p.initrdPath,
    memory: '512M',
    cmdline: `${DEFAULT_CMDLINE} rdinit=/init ${EMULATION_CMDLINE}`,
    ...options,
  });
  onMachine?.(linux);
  let text = '';
  linux.output.on('data', (c: Buffer) => {
    text += c;
    if (until?.test(text)) linux.stop();
  });
  const limit = setTimeout(() => linux.stop(), TIMEOUT_MS - 10000);
  try {
    return { exit: await linux.start(), text };
  } finally {
    clearTimeout(limit);
    linux.close();
  }
}

describeLinux('a Debian kernel', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'vcpu-distro-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a guest system call from user mode reaches kernel mode', async () => {
    expect(await syscallLandsOn()).toBe(KERNEL_CS);
  });

  test(
    'finds the machine through its ACPI tables: two CPUs, COM1 by PnP, and boots to init',
    async () => {
      const p = prepare();
      const { text } = await boot(
        p,
        { cpus: 2, disks: [{ path: p.diskPath, readOnly: true }], vsock: { cid: 3, uds: join(dir, 'acpi.sock') } },
        /Run \/init as init process/,
      );
      // In boot order, so a failure says how far the kernel got.
      expect(text).toContain('Linux version');
      expect(text).toMatch(/ACPI: RSDP 0x0*E0000 /);
      expect(text).toMatch(/ACPI: (XSDT|FACP|DSDT|APIC) /);
      expect(text).toContain('ACPI: Using ACPI (MADT) for SMP configuration information');
      expect(text).not.toMatch(/ACPI (BIOS )?Error/);
      expect(text).toContain('smp: Brought up 1 node, 2 CPUs');
      // The 8250 driver found the UART from the DSDT's PNP0501 device.
      expect(text).toMatch(/pnp: PnP ACPI: found 1 devices/);
      expect(text).toMatch(/00:0\d: ttyS0 at I\/O 0x3f8 .* is a 16550A/);
      expect(text).toContain('Run /init as init process');
    },
    TIMEOUT_MS,
  );

  test(
    "Debian's virtio-mmio, virtio-blk, ext4 and vsock modules: a read-only ext4 disk is read and refuses writes, vsock echoes",
    async () => {
      if ((await syscallLandsOn()) !== KERNEL_CS)
        throw new Error(
          "this host's KVM does not carry out a syscall from guest user mode (the first case), so no Linux userland can run on it: see docs/linux.md",
        );
      const p = prepare();
      const before = createHash('sha256').update(readFileSync(p.diskPath)).digest('hex');
      const { exit, text } = await boot(
        p,
        { cpus: 2, disks: [{ path: p.diskPath, readOnly: true }], vsock: { cid: 3, uds: join(dir, 'v.sock') } },
        undefined,
        (linux) => linux.vsock!.listen(p.vsock.port, (socket) => socket.pipe(socket)),
      );
      // In the order /init does them.
      expect(text).toContain('Run /init as init process');
      expect(text).toMatch(/^loaded\r?$/m);
      expect(text).not.toMatch(/^no \w+/m); // every module loads
      expect(text).toContain(p.diskText);
      expect(text).toMatch(/^write refused\r?$/m);
      expect(text).toContain('Read-only file system');
      expect(text).toContain(`vsock echo: ${p.vsock.message}`);
      expect(text).toContain(p.marker);
      expect(exit.kind).toBe('SystemEventReset');
      expect(createHash('sha256').update(readFileSync(p.diskPath)).digest('hex')).toBe(before);
    },
    TIMEOUT_MS,
  );
});
