// virtio devices on a Linux machine: a freestanding C guest (guests/virtio/), booted by
// bootLinux as its kernel, finds the devices the loader announced on its command line
// and drives each through its MMIO registers as a driver would: a read-write disk and a
// read-only one (read sector 0, write sector 1, flush, get-id, a read past the end)
// an entropy device, a console (hvc0), a vsock device (both ways, with Firecracker's
// host convention), a network interface on a tap device in a namespace of the test's
// own, and devices written in TypeScript, their requests served by the devices' own
// threads.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bootLinux, Kvm, type LinuxOptions, restoreLinux, VcpuError } from '../ts';
import { describeKvm, thrown } from './helpers';

const GUEST = join(__dirname, '..', 'guests', 'virtio', 'virtio_test.elf');
const CLI = join(__dirname, '..', 'dist', 'cli.js');
let dir: string;

beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'vcpu-virtio-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 64 KiB image whose sector 0 starts with `text`. */
function image(name: string, text: string): string {
  const path = join(dir, name);
  const bytes = Buffer.alloc(64 << 10);
  bytes.write(text);
  writeFileSync(path, bytes);
  return path;
}

/** Boots the test guest with `options` (and `input` typed at once) and returns its console output. */
async function run(options: Partial<LinuxOptions>, input?: string): Promise<string> {
  const linux = bootLinux({ kernel: GUEST, memory: '32M', cmdline: 'console=ttyS0', ...options });
  if (input !== undefined) linux.input.write(input);
  let out = '';
  linux.output.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => linux.stop(), 20_000);
  try {
    expect((await linux.start()).kind).toBe('SystemEventReset');
  } finally {
    clearTimeout(timer);
    linux.close();
  }
  return out;
}

describeKvm('virtio devices', () => {
  test('a guest driver reads, writes, flushes and names two disks, one read-only, and reads random bytes', async () => {
    const rw = image('rw.img', 'sector zero of the rw disk');
    const ro = image('ro.img', 'sector zero of the ro disk');
    const out = await run({ disks: [{ path: rw }, { path: ro, readOnly: true }], rng: true });
    const sections = out.split(/^(?=virtio-)/m);
    expect(sections[0]).toBe('virtio test guest\n');
    expect(sections[1]).toBe(
      'virtio-blk at 0xd0000000: 128 sectors\n' +
        '  read sector 0: status 0, "sector zero of the rw disk"\n' +
        '  write sector 1: status 0\n' +
        '  flush: status 0\n' +
        '  get-id: status 0, "rw.img"\n' +
        '  read past the end: status 1\n',
    );
    expect(sections[2]).toBe(
      'virtio-blk at 0xd0001000: 128 sectors, read-only\n' +
        '  read sector 0: status 0, "sector zero of the ro disk"\n' +
        '  write sector 1: status 1\n' +
        '  flush: status 0\n' +
        '  get-id: status 0, "ro.img"\n' +
        '  read past the end: status 1\n',
    );
    expect(sections[3]).toMatch(/^virtio-rng at 0xd0002000: 16 bytes [0-9a-f]{32}, used-buffer interrupt\n/);
    expect(sections[3]).not.toMatch(/bytes 0{32}/);
    expect(out).toMatch(/virtio test guest: done\n$/);
    // The write reached the file; the read-only image is untouched.
    expect(readFileSync(rw).subarray(512, 544).toString()).toBe('written by the virtio test guest');
    expect(readFileSync(ro).subarray(512, 1024)).toEqual(Buffer.alloc(512));
  });

  test("console: 'virtio' puts the machine's output and input on hvc0", async () => {
    const out = await run({ console: 'virtio' }, 'ping from the host\n');
    expect(out).toContain('virtio-console at 0xd0000000: hello from hvc0\nwrote to hvc0\n');
    expect(out).toContain('hvc0 got: ping from the host\n  echoed its input\n');
  });

  test("vsock: the guest reaches a host listener, and the host reaches the guest's port, Firecracker's way", async () => {
    const uds = join(dir, 'v.sock');
    const linux = bootLinux({ kernel: GUEST, memory: '32M', cmdline: 'console=ttyS0', vsock: { cid: 7, uds } });
    expect(linux.vsock?.uds).toBe(uds);
    let echoed = '';
    linux.vsock!.listen(1234, (s) => {
      s.on('error', () => undefined);
      s.on('data', (d) => ((echoed += d.toString()), s.write(d)));
    });
    let out = '';
    let heard = '';
    let refused: unknown;
    const asked = new Promise<void>((resolve) => {
      linux.output.on('data', (d: Buffer) => {
        out += d.toString();
        if (!out.includes('waiting on port 5000') || heard !== '' || refused !== undefined) return;
        heard = ' ';
        void (async () => {
          // A port nobody listens on is refused; then the guest's port 5000 answers.
          refused = await linux.vsock!.connect(4999).catch((e: VcpuError) => e.code);
          const s = await linux.vsock!.connect(5000);
          s.on('error', () => undefined);
          s.write('hi guest');
          s.once('data', (d) => ((heard = d.toString()), s.end(), resolve()));
        })();
      });
    });
    const timer = setTimeout(() => linux.stop(), 60_000);
    const exit = await linux.start();
    clearTimeout(timer);
    await asked;
    linux.close();
    expect(exit.kind).toBe('SystemEventReset');
    expect(out).toContain(
      'virtio-vsock at 0xd0000000: cid 7\n' +
        '  connected to host port 1234\n' +
        '  host port 1234 echoed: hello over vsock\n' +
        '  closed\n' +
        '  waiting on port 5000\n' +
        '  refused port 4999\n' +
        '  answered on port 5000\n' +
        '  the host closed port 5000\n',
    );
    expect(echoed).toBe('hello over vsock');
    expect(heard).toBe('guest heard: hi guest');
    expect(refused).toBe('ECONNRESET');
  });

  test('a device written in TypeScript answers the guest driver, one call per notification', async () => {
    const calls: number[] = [];
    const seen: string[] = [];
    const out = await run({
      devices: [
        {
          type: 0x7fff,
          queues: [16],
          onNotify(queue) {
            calls.push(queue.index);
            for (let chain; (chain = queue.pop());) {
              seen.push(Buffer.concat(chain.readable).toString());
              const n = Buffer.from(chain.writable[0].buffer, chain.writable[0].byteOffset, 64).write('pong');
              queue.push(chain, n);
            }
            queue.interrupt();
          },
        },
      ],
      rng: true,
    });
    expect(out).toContain('echo device at 0xd0001000: 4 bytes back, "pong", interrupted\n');
    expect(out).toMatch(/virtio-rng at 0xd0000000: 16 bytes/); // disks, rng, console, net, devices, vsock
    expect(calls).toEqual([0]);
    expect(seen).toEqual(['hello, device']);
  });

  test('a TypeScript device that throws gives its chains back empty, and the machine goes on', async () => {
    const out = await run({
      devices: [
        {
          type: 0x7fff,
          queues: [16],
          onNotify() {
            throw new Error('a bug in the device');
          },
        },
      ],
    });
    expect(out).toContain('echo device at 0xd0000000: 0 bytes back, ""');
    expect(out).toMatch(/virtio test guest: done\n$/);
  });

  test('vm.addVirtioDevice: registers through handleMmio for a VM run by hand; bad specs refused', () => {
    const vm = Kvm.open().createVm({ irqchip: true });
    vm.addMemory({ guestAddress: 0, size: 2 << 20 });
    const dev = vm.addVirtioDevice({ type: 0x7fff, queues: [8, 4], onNotify: () => undefined });
    expect([dev.address, dev.irq, dev.cmdline]).toEqual([0xd0000000, 5, 'virtio_mmio.device=4K@0xd0000000:5']);
    const read = (offset: number) => {
      const data = new Uint8Array(4);
      expect(dev.handleMmio({ address: dev.address + offset, size: 4, operation: 'read', data })).toBe(true);
      return Buffer.from(data).readUInt32LE();
    };
    expect([read(0), read(4), read(8)]).toEqual([0x74726976, 2, 0x7fff]);
    const data = new Uint8Array(4);
    expect(dev.handleMmio({ address: dev.address + 0x1000, size: 4, operation: 'read', data })).toBe(false);
    expect(vm.addVirtioDevice({ type: 1, queues: [16], onNotify: () => undefined }).address).toBe(0xd0001000);
    expect(thrown(() => vm.addVirtioDevice({ type: 1, queues: [3], onNotify: () => undefined })).code).toBe('EINVAL');
    expect(thrown(() => vm.addVirtioDevice({ type: 0, queues: [4], onNotify: () => undefined })).code).toBe('EINVAL');
    expect(thrown(() => vm.addVirtioDevice({ type: 1, queues: [4] } as never)).code).toBe('EINVAL');
    dev.close();
    vm.close();
  });

  // A tap device needs /dev/net/tun and a network namespace of the test's own.
  const tap = spawnSync('unshare', ['-n', 'true']).status === 0 && existsSync('/dev/net/tun');
  if (!tap) console.warn('virtio-net test skipped: needs /dev/net/tun and unshare -n (a network namespace)');
  (tap ? test : test.skip)(
    "virtio-net: the guest's ARP request reaches the host's tap and the answer comes back",
    () => {
      const r = spawnSync(
        'unshare',
        ['-n', process.execPath, join(__dirname, 'net', 'tap_machine.js'), join(__dirname, '..'), GUEST],
        {
          encoding: 'utf8',
          timeout: 60_000,
        },
      );
      const { out, exit, mac } = JSON.parse(r.stdout) as { out: string; exit: string; mac: string };
      expect(exit).toBe('SystemEventReset');
      expect(out).toContain(
        'virtio-net at 0xd0000000: mac 02:00:00:00:00:42\n' +
          '  sent an ARP request for 10.0.0.1\n' +
          `  10.0.0.1 is at ${mac}\n`,
      );
    },
  );

  test('a machine with virtio devices is snapshotted and restored with them, mid-run', async () => {
    const rw = image('snap.img', 'sector zero before the snapshot');
    const file = join(dir, 'virtio.snap');
    const linux = bootLinux({
      kernel: GUEST,
      memory: '32M',
      cmdline: 'console=ttyS0',
      disks: [{ path: rw }],
      rng: true,
    });
    let before = '';
    linux.output.on('data', (d: Buffer) => (before += d.toString()));
    const started = linux.start();
    linux.stop(); // wherever the guest got to: before, inside or after its drivers' set-up
    expect((await started).kind).toBe('Intr');
    linux.snapshot(file);
    linux.close();
    const back = restoreLinux(file);
    let after = '';
    back.output.on('data', (d: Buffer) => (after += d.toString()));
    const timer = setTimeout(() => back.stop(), 30_000);
    expect((await back.start()).kind).toBe('SystemEventReset');
    clearTimeout(timer);
    back.close();
    const out = before + after;
    expect(out).toContain('  read sector 0: status 0, "sector zero before the snapshot"\n');
    expect(out).toMatch(/virtio-rng at 0xd0001000: 16 bytes [0-9a-f]{32}/);
    expect(out).toMatch(/virtio test guest: done\n$/);
    expect(readFileSync(rw).subarray(512, 544).toString()).toBe('written by the virtio test guest');
    // A device written in TypeScript cannot be saved.
    const js = bootLinux({
      kernel: GUEST,
      memory: '32M',
      devices: [{ type: 0x7fff, queues: [16], onNotify: () => undefined }],
    });
    expect(thrown(() => js.snapshot(join(dir, 'js.snap'))).code).toBe('ENOTSUP');
    js.close();
  });

  test('the loader announces each device on the command line, in order', async () => {
    const a = image('a.img', 'first');
    const b = image('b.img', 'second');
    const out = await run({ disks: [{ path: b }, { path: a }] });
    expect(out).toMatch(/0xd0000000[^\n]*\n[^\n]*"second"[\s\S]*0xd0001000[^\n]*\n[^\n]*"first"/);
  });

  test('bad disks and bad device options are refused before the guest runs', () => {
    const odd = join(dir, 'odd.img');
    writeFileSync(odd, Buffer.alloc(1000));
    const boot = (o: Partial<LinuxOptions>) => () => bootLinux({ kernel: GUEST, memory: '32M', ...o } as LinuxOptions);
    expect(thrown(boot({ disks: [{ path: odd }] })).message).toMatch(/not a multiple of 512/);
    expect(thrown(boot({ disks: [{ path: join(dir, 'missing.img') }] })).code).toBe('ENOENT');
    expect(thrown(boot({ disks: [{ path: odd, bogus: 1 } as never] })).code).toBe('EINVAL');
    expect(thrown(boot({ vsock: { cid: 2 } })).code).toBe('EINVAL');
    expect(thrown(boot({ vsock: { cid: 3, uds: join(dir, 'no', 'such', 'dir.sock') } })).code).toBe('ENOENT');
    expect(thrown(boot({ console: 'vga' as never })).code).toBe('EINVAL');
    expect(thrown(boot({ net: [{ tap: 'a-name-far-too-long-for-a-tap' }] })).code).toBe('EINVAL');
    expect(thrown(boot({ net: [{ tap: 'tap9', mac: 'not a mac' }] })).code).toBe('EINVAL');
  });

  test('npx vcpu boot --disk PATH[,ro] --rng', () => {
    const rw = image('cli.img', 'from the command line');
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'boot',
        '--kernel',
        GUEST,
        '--mem',
        '32M',
        '--cmdline',
        'console=ttyS0',
        '--disk',
        rw,
        '--disk',
        `${rw},ro`,
        '--rng',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.stdout).toContain('"from the command line"');
    expect(r.stdout).toContain('128 sectors, read-only');
    expect(r.stdout).toMatch(/virtio-rng at 0xd0002000/);
    expect(r.status).toBe(0);
  });
});
