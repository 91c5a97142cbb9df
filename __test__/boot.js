// How a test starts a guest, in one place for the suites (through helpers.ts) and for
// the child processes and workers they spawn (which require this file directly): the
// guest's bytes from guests/, a VM with 2 MiB of RAM at 0 holding it at 0x1000, and
// vcpu 0 in long mode about to run it.
'use strict';
const { readFileSync } = require('node:fs');
const { join } = require('node:path');

const LOAD_ADDR = 0x1000;

/** The assembled bytes of guests/<name>.bin. */
function guest(name) {
  return new Uint8Array(readFileSync(join(__dirname, '..', 'guests', `${name}.bin`)));
}

/** `Kvm` (the package's, as the caller loaded it) → `{ vm, vcpu }` running guest `name`. */
function longMode(Kvm, name, options) {
  const vm = Kvm.open().createVm(options);
  vm.addMemory({ guestAddress: 0, size: 2 << 20 });
  vm.write(LOAD_ADDR, guest(name));
  const vcpu = vm.createVcpu(0);
  vcpu.setupLongMode({ rip: LOAD_ADDR, rsp: 0x8000 });
  return { vm, vcpu };
}

module.exports = { LOAD_ADDR, guest, longMode };
