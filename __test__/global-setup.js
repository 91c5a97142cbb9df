// Fails the whole jest run at once, with what to do, when /dev/kvm is unusable, unless
// the user opted out with VCPU_SKIP_KVM=1 (never under CI=true).
'use strict';
const { kvmStatus } = require('../scripts/kvm-status');

module.exports = async () => {
  const status = kvmStatus();
  if (status.ok) return;
  if (process.env.VCPU_SKIP_KVM === '1' && process.env.CI !== 'true') {
    process.env.VCPU_KVM_SKIPPED = '1';
    return;
  }
  throw new Error(`${status.message} Set VCPU_SKIP_KVM=1 to skip these tests (not under CI=true).`);
};
