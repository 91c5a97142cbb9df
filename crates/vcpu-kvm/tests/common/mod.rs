//! Shared set-up for the real-guest tests: a VM with 2 MiB of RAM at 0 and a guest
//! program from `guests/` at 0x1000.

#![allow(dead_code)]

use std::time::Duration;

use vcpu_kvm::{Kvm, KvmVcpu, KvmVm, Vcpu, VcpuExit, VmConfig};

pub const RAM_SIZE: usize = 2 << 20;
pub const LOAD_ADDR: u64 = 0x1000;

/// The assembled bytes of `guests/<name>.bin`.
pub fn guest(name: &str) -> Vec<u8> {
    guest_file(&format!("{name}.bin"))
}

/// The file `guests/<file>` (a guest program, the test kernel, ...).
pub fn guest_file(file: &str) -> Vec<u8> {
    let path = format!("{}/../../guests/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A VM with the in-kernel irqchip and `mem` bytes of RAM at 0.
pub fn irqchip_vm(mem: usize) -> KvmVm {
    let vm = Kvm::open(None)
        .expect("open /dev/kvm")
        .create_vm(VmConfig {
            irqchip: true,
            ..VmConfig::default()
        })
        .expect("create VM");
    vm.add_memory(0, mem, false, false).expect("add memory");
    vm
}

/// A VM with RAM at [0, 2 MiB) holding `code` at 0x1000, and vcpu 0 in 64-bit long
/// mode about to run it.
pub fn long_mode(name: &str) -> (KvmVm, std::sync::Arc<KvmVcpu>) {
    let kvm = Kvm::open(None).expect("open /dev/kvm");
    let vm = kvm.create_vm(VmConfig::default()).expect("create VM");
    vm.add_memory(0, RAM_SIZE, false, false).expect("add memory");
    vm.write(LOAD_ADDR, &guest(name)).expect("load guest");
    let vcpu = vm.create_vcpu(0).expect("create vcpu");
    vcpu.setup_long_mode_at(LOAD_ADDR, 0x8000).expect("long mode");
    (vm, vcpu)
}

/// Runs with a watchdog: a guest that does not exit within `secs` is kicked, and the
/// test sees `Err(EINTR)` instead of hanging.
pub fn run_bounded(vcpu: &KvmVcpu, secs: u64) -> vcpu_kvm::Result<VcpuExit> {
    run_bounded_for(vcpu, Duration::from_secs(secs))
}

/// [`run_bounded`] with any budget; the kick is taken back afterwards, so the next run
/// starts clean.
pub fn run_bounded_for(vcpu: &KvmVcpu, budget: Duration) -> vcpu_kvm::Result<VcpuExit> {
    let handle = vcpu.signal_handle();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(budget.max(Duration::from_millis(1))).is_err() {
            handle.kick();
        }
    });
    let exit = vcpu.run();
    let _ = done.send(());
    let _ = watchdog.join();
    vcpu.set_immediate_exit(false);
    exit
}

/// Puts `vcpu` in 16-bit real mode (KVM's reset state with CS moved to 0) at `rip`.
pub fn start_in_real_mode(vcpu: &KvmVcpu, rip: u64) {
    let mut sregs = vcpu.get_sregs().expect("sregs");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).expect("sregs");
    vcpu.set_regs(&kvm_bindings::kvm_regs {
        rip,
        rflags: 2,
        ..Default::default()
    })
    .expect("regs");
}

/// Runs and expects a specific exit.
pub fn expect_exit(vcpu: &KvmVcpu, want: VcpuExit) {
    let got = run_bounded(vcpu, 10).expect("run");
    assert_eq!(got, want);
}

/// The port `guests/counter.asm` writes its count to, and where it keeps it.
pub const COUNT_PORT: u64 = 0x10;
pub const COUNTER: u64 = 0x5000;

/// Runs the counting guest to its next port write and returns the number it wrote.
pub fn next_count(vcpu: &KvmVcpu) -> u32 {
    match run_bounded(vcpu, 10).expect("run") {
        VcpuExit::Io => {}
        other => panic!("expected Io, got {other:?}"),
    }
    let mut count = 0;
    vcpu.handle_io(&mut |p| {
        assert_eq!(p.address, COUNT_PORT);
        if let vcpu_kvm::IoOperation::Write(data) = p.operation {
            count = u32::from_le_bytes(data[..4].try_into().unwrap());
        }
    })
    .unwrap();
    count
}

/// The counting guest's count, read from its memory.
pub fn counter_at(vm: &KvmVm) -> u64 {
    let mut b = [0u8; 8];
    vm.read(COUNTER, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A fresh path in the temp directory, removed when dropped.
pub struct TempPath(pub std::path::PathBuf);

impl TempPath {
    pub fn new(name: &str) -> Self {
        TempPath(std::env::temp_dir().join(format!("vcpu-test-{}-{name}.snap", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
