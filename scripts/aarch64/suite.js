// The arm64 suite, run inside an arm64 Linux guest with KVM (see scripts/test-aarch64.js):
// real guests on real arm64 KVM through the package's facade. Prints one line per test
// and `N passed, M failed`; exits non-zero on a failure.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const PKG = process.env.VCPU_PKG ?? path.join(__dirname, '..', '..');
const { Kvm, arm64SysReg } = require(PKG);
const GUESTS = path.join(PKG, 'guests', 'aarch64');
const MMIO = 0x10000000;
const SYSTEM_OFF = 'SystemEventShutdown';

/** A VM with 4 MiB of RAM at 0 holding guest `name` at 0x1000, vcpu 0 at EL1h there. */
function machine(name, setup = () => {}) {
  const vm = Kvm.open().createVm();
  vm.addMemory({ guestAddress: 0, size: 4 << 20 });
  setup(vm);
  vm.write(0x1000, fs.readFileSync(path.join(GUESTS, `${name}.bin`)));
  const vcpu = vm.createVcpu(0);
  vcpu.setupEl1({ pc: 0x1000, sp: 0x8000 });
  return { vm, vcpu };
}

/** The little-endian number in `bytes`. */
const le = (bytes) => bytes.reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);

/** The MMIO accesses a guest makes until it powers off: [address, size, write, value]. */
function mmioLog(vcpu, reads = () => 0n) {
  const log = [];
  const exit = vcpu.runUntil({
    mmio(p) {
      if (p.operation === 'write') {
        log.push([p.address, p.size, true, le(p.data.subarray(0, p.size))]);
      } else {
        const v = reads(p.address, p.size);
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(v);
        p.data.set(b.subarray(0, p.size));
        log.push([p.address, p.size, false, v]);
      }
    },
  });
  return { exit, log };
}

const tests = {
  'MMIO writes and reads at widths 1, 2, 4 and 8; PSCI SYSTEM_OFF'() {
    const { vm, vcpu } = machine('mmio');
    const answers = { 1: 0xabn, 2: 0xbeefn, 4: 0xcafef00dn, 8: 0x0123456789abcdefn };
    const { exit, log } = mmioLog(vcpu, (_a, size) => answers[size]);
    assert.equal(exit.kind, SYSTEM_OFF);
    assert.deepEqual(log, [
      [MMIO, 1, true, 0x11n],
      [MMIO + 8, 2, true, 0x2222n],
      [MMIO + 16, 4, true, 0x33333333n],
      [MMIO + 24, 8, true, 0x4444444444444444n],
      [MMIO + 32, 1, false, 0xabn],
      [MMIO + 40, 2, false, 0xbeefn],
      [MMIO + 48, 4, false, 0xcafef00dn],
      [MMIO + 56, 8, false, 0x0123456789abcdefn],
      [MMIO + 64, 8, true, 0xabn],
      [MMIO + 72, 8, true, 0xbeefn],
      [MMIO + 80, 8, true, 0xcafef00dn],
      [MMIO + 88, 8, true, 0x0123456789abcdefn],
    ]);
    vm.close();
  },

  'an SMCCC hypercall with 3 arguments answered in JS; results in X0-X3'() {
    const { vm, vcpu } = machine('hypercall');
    const calls = [];
    const exit = vcpu.runUntil({
      hypercall(abi) {
        calls.push([abi.hypercallId, [...abi.args].slice(0, 3)]);
        abi.setResults([0n, 10n, 20n, 30n]);
      },
      mmio(p) {
        calls.push([p.address, le(p.data)]);
      },
    });
    assert.equal(exit.kind, SYSTEM_OFF);
    assert.deepEqual(calls, [
      [0xc2000001n, [1n, 2n, 3n]],
      [MMIO, 0n],
      [MMIO + 8, 10n],
      [MMIO + 16, 20n],
      [MMIO + 24, 30n],
    ]);
    vm.close();
  },

  'an unanswered SMCCC call returns NOT_SUPPORTED (-1) in X0'() {
    const { vm, vcpu } = machine('hypercall');
    const seen = [];
    vcpu.runUntil({ hypercall() {}, mmio: (p) => seen.push(le(p.data)) });
    assert.equal(seen[0], 0xffffffffffffffffn);
    vm.close();
  },

  'PSCI SYSTEM_RESET'() {
    const { vm, vcpu } = machine('reset');
    assert.equal(vcpu.run().kind, 'SystemEventReset');
    vm.close();
  },

  async 'a kick from a worker stops a spinning vcpu'() {
    const { vm, vcpu } = machine('spin');
    const worker = new Worker(
      `const { VcpuSignalHandle } = require(${JSON.stringify(PKG)});
       const { workerData } = require('node:worker_threads');
       setTimeout(() => VcpuSignalHandle.from(workerData).signalImmediateExit(), 200);`,
      { eval: true, workerData: vcpu.signalHandle() },
    );
    const start = Date.now();
    assert.equal(vcpu.run().kind, 'Intr');
    assert.ok(Date.now() - start >= 150);
    await worker.terminate();
    vm.close();
  },

  'register round trips: x0-x30, sp, pc, pstate, EL1 registers, a system register'() {
    const { vm, vcpu } = machine('spin');
    const regs = {};
    for (let i = 0; i <= 30; i++) regs[`x${i}`] = 0x1000n * BigInt(i) + 7n;
    Object.assign(regs, { sp: 0x7000n, pc: 0x1000n, spEl1: 0x8000n, elrEl1: 0x2000n, spsrEl1: 0x3c5n });
    vcpu.setRegs(regs);
    const back = vcpu.getRegs();
    for (const [k, v] of Object.entries(regs)) assert.equal(back[k], v, k);
    assert.equal(back.pstate, 0x3c5n); // EL1h, DAIF masked (setupEl1)
    vcpu.setRegs({ x5: 5n });
    assert.equal(vcpu.getRegs().x5, 5n);
    assert.equal(vcpu.getRegs().x6, 0x6007n); // the others kept
    const VBAR_EL1 = arm64SysReg(3, 0, 12, 0, 0);
    vcpu.setOneReg(VBAR_EL1, 0x40000n);
    assert.equal(vcpu.getOneReg(VBAR_EL1), 0x40000n);
    assert.throws(() => vcpu.setRegs({ rip: 1n }), /rip/);
    vm.close();
  },

  'the in-kernel GIC: irqfds and irq lines once every vcpu exists; a later vcpu is refused (EBUSY)'() {
    const vm = Kvm.open().createVm({ irqchip: true });
    vm.addMemory({ guestAddress: 0, size: 4 << 20 });
    vm.createVcpu(0);
    vm.createVcpu(1);
    const irq = vm.registerIrqfd(6); // completes the GIC
    irq.trigger();
    vm.setIrqLine(7, true);
    vm.setIrqLine(7, false);
    assert.throws(
      () => vm.createVcpu(2),
      (e) => e.code === 'EBUSY' && /create every vcpu first/.test(e.message),
    );
    irq.close();
    vm.close();
  },

  'a snapshot file from x86-64 is refused, saying so'() {
    const file = path.join(process.env.VCPU_LINUX_DIR ?? '/linux', 'x86.snap');
    assert.throws(
      () => Kvm.open().restoreVm(file),
      (e) => e.code === 'EINVAL' && /another architecture/.test(e.message),
    );
  },

  'read-only memory: a guest write exits as MMIO and the memory keeps its byte'() {
    const { vm, vcpu } = machine('rom', (v) => {
      v.addMemory({ guestAddress: 0x800000, size: 0x1000, readonly: true });
    });
    vm.write(0x800000, [0xaa]);
    const { exit, log } = mmioLog(vcpu);
    assert.equal(exit.kind, SYSTEM_OFF);
    assert.deepEqual(log, [
      [0x800000, 1, true, 0x55n],
      [MMIO, 8, true, 0xaan],
    ]);
    assert.equal(vm.read(0x800000, 1)[0], 0xaa);
    vm.close();
  },
};

Object.assign(tests, require('./linux_cases.js')(PKG));

(async () => {
  let passed = 0;
  let failed = 0;
  const only = process.env.VCPU_ONLY ? new RegExp(process.env.VCPU_ONLY) : null;
  for (const [name, fn] of Object.entries(tests).filter(([n]) => !only || only.test(n))) {
    const start = Date.now();
    try {
      await fn();
      passed++;
      console.log(`ok ${name} (${Date.now() - start} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  // Exit now: a case's leftovers (a read pending on a serial port) must not hold it.
  process.exit(failed === 0 ? 0 : 1);
})();
