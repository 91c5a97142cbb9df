// Runs inside a network namespace of its own (`unshare -n node tap_machine.js PKG GUEST`):
// a tap device with 10.0.0.1/24, and the virtio test guest booted with a virtio-net
// interface on it. Prints one JSON line: the guest's console, its exit, the tap's MAC.
'use strict';
const { execFileSync } = require('node:child_process');
const { bootLinux } = require(process.argv[2]);
const ip = (...a) => execFileSync('ip', a);
ip('link', 'set', 'lo', 'up');
ip('tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
ip('addr', 'add', '10.0.0.1/24', 'dev', 'tap0');
ip('link', 'set', 'tap0', 'up');
const mac = /link\/ether (\S+)/.exec(ip('-o', 'link', 'show', 'tap0').toString())[1];
const linux = bootLinux({
  kernel: process.argv[3],
  memory: '32M',
  cmdline: 'console=ttyS0',
  net: [{ tap: 'tap0', mac: '02:00:00:00:00:42' }],
});
let out = '';
linux.output.on('data', (d) => (out += d));
const timer = setTimeout(() => linux.stop(), 60000);
linux.start().then((exit) => {
  clearTimeout(timer);
  linux.close();
  process.stdout.write(JSON.stringify({ out, exit: exit.kind, mac }));
});
