// A minimal VM manager: boots a Linux kernel with a serial console on this terminal,
// stops the guest on Ctrl-C or after a time limit, and reports how it ended.
// Run with `npm run example -- vmm -- --kernel bzImage [--initrd initrd.img] [--mem 256M]
// [--seconds 60]`; with no kernel it boots the test kernel of guests/.
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { bootLinux, DEFAULT_CMDLINE, type VcpuExit } from 'vcpu';

export async function main(
  argv: readonly string[] = [],
  log: (line: string) => void = console.error,
): Promise<VcpuExit> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      kernel: {
        type: 'string',
        default: join(dirname(require.resolve('vcpu/package.json')), 'guests', 'test_kernel.bzImage'),
      },
      initrd: { type: 'string' },
      cmdline: { type: 'string', default: DEFAULT_CMDLINE },
      mem: { type: 'string', default: '256M' },
      seconds: { type: 'string', default: '60' },
    },
  });

  // 1. The machine: RAM, the kernel and initrd loaded by the boot protocol, a vcpu at
  //    the 64-bit entry, COM1 and the i8042 emulated in the exit path.
  const linux = bootLinux({
    kernel: values.kernel!,
    initrd: values.initrd,
    cmdline: values.cmdline,
    memory: values.mem,
  });
  log(`vmm: kernel entry ${linux.boot.entry.toString(16)}h, zero page ${linux.boot.zeroPage.toString(16)}h`);

  // 2. The console: guest output to stdout, our stdin to the guest.
  linux.output.pipe(process.stdout, { end: false });
  const forward = (chunk: Buffer) => linux.input.write(chunk);
  process.stdin.on('data', forward);

  // 3. Stopping: Ctrl-C or the time limit kicks the vcpu out of the guest.
  const stop = () => linux.stop();
  process.once('SIGINT', stop);
  const limit = setTimeout(stop, Number(values.seconds) * 1000);

  // 4. Run it on its own thread; the event loop stays free for the console.
  const started = Date.now();
  const exit = await linux.start();
  clearTimeout(limit);
  process.off('SIGINT', stop);
  process.stdin.off('data', forward);
  process.stdin.pause();
  const how =
    exit.kind === 'SystemEventReset' ? 'powered off (i8042 reset)' : exit.kind === 'Intr' ? 'stopped' : exit.kind;
  log(`vmm: guest ${how} after ${Date.now() - started} ms`);
  linux.close();
  return exit;
}

if (require.main === module)
  main(process.argv.slice(2)).then((exit) => process.exit(exit.kind === 'SystemEventReset' ? 0 : 1));
