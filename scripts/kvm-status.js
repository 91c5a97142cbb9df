// Whether this process can open /dev/kvm, and if not, what to do about it.
'use strict';
const fs = require('node:fs');

function kvmStatus(path = '/dev/kvm') {
  try {
    fs.closeSync(fs.openSync(path, 'r+'));
    return { ok: true, message: `${path} is usable.` };
  } catch (e) {
    const what =
      e.code === 'ENOENT'
        ? `${path} does not exist: load the KVM module (modprobe kvm_intel or kvm_amd) or use a host with (nested) virtualization.`
        : e.code === 'EACCES' || e.code === 'EPERM'
          ? `no permission to open ${path}: add your user to the 'kvm' group (sudo usermod -aG kvm $USER, then log in again).`
          : `cannot open ${path}: ${e.message}.`;
    return { ok: false, message: `vcpu tests need KVM: ${what}` };
  }
}

module.exports = { kvmStatus };
