//! The GDB stub driven over its socket by a scripted client (the remote protocol's
//! packets), while a plain `run()` loop on another thread runs the counting guest:
//! stop on attach, threads, registers, memory, a hardware breakpoint, a single step,
//! Ctrl-C, and the vcpu's own guest-debug settings, which the stub's exits never reach
//! while it is attached and which come back at detach; `k` closes the VM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vcpu_kvm::kvm::GuestDebug;
use vcpu_kvm::vmm::gdb::GdbServer;
use vcpu_kvm::{KvmVcpu, Vcpu, VcpuExit};

/// A remote-protocol client with acknowledgements, as gdb speaks it by default.
struct Client(TcpStream);

impl Client {
    fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client(s)
    }

    fn send(&mut self, body: &str) {
        let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        write!(self.0, "${body}#{sum:02x}").unwrap();
    }

    /// The next packet's body (acks skipped, each packet acknowledged).
    fn reply(&mut self) -> String {
        let mut byte = [0u8];
        loop {
            self.0.read_exact(&mut byte).unwrap();
            if byte[0] == b'$' {
                break;
            }
        }
        let mut body = Vec::new();
        loop {
            self.0.read_exact(&mut byte).unwrap();
            if byte[0] == b'#' {
                break;
            }
            body.push(byte[0]);
        }
        let mut sum = [0u8; 2];
        self.0.read_exact(&mut sum).unwrap();
        self.0.write_all(b"+").unwrap();
        // Run-length encoding: "X*n" is X and then n - 29 more of it.
        let mut out = Vec::new();
        let mut bytes = body.into_iter();
        while let Some(b) = bytes.next() {
            if b == b'*' {
                let last = *out.last().unwrap();
                let n = bytes.next().unwrap() - 29;
                out.extend(std::iter::repeat_n(last, n as usize));
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn ask(&mut self, body: &str) -> String {
        self.send(body);
        self.reply()
    }

    /// RIP from a `g` reply: after 16 general registers of 8 bytes, little-endian hex.
    fn rip(&mut self) -> u64 {
        let g = self.ask("g");
        let hex = &g[16 * 16..17 * 16];
        let bytes: Vec<u8> = (0..8)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        u64::from_le_bytes(bytes.try_into().unwrap())
    }
}

/// Runs the counting guest with a plain `run()` loop until the VM closes or `stop`;
/// counts port writes and `Debug` exits as the user's code sees them.
struct Loop {
    ios: Arc<AtomicU64>,
    debugs: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl Loop {
    fn start(vcpu: Arc<KvmVcpu>) -> Self {
        let (ios, debugs): (Arc<AtomicU64>, Arc<AtomicU64>) = (Arc::default(), Arc::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (i, d, s) = (Arc::clone(&ios), Arc::clone(&debugs), Arc::clone(&stop));
        let thread = std::thread::spawn(move || loop {
            if s.load(Ordering::Acquire) {
                return "stopped".into();
            }
            match vcpu.run() {
                Ok(VcpuExit::Io) => {
                    vcpu.handle_io(&mut |_| {}).unwrap();
                    i.fetch_add(1, Ordering::Relaxed);
                }
                Ok(VcpuExit::Debug { .. }) => {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.is_interrupted() && !vcpu.interrupted_by_request() => {}
                Err(e) if e.is_interrupted() => {}
                other => return format!("{other:?}"),
            }
        });
        Loop {
            ios,
            debugs,
            stop,
            thread: Some(thread),
        }
    }

    fn wait_for(&self, what: &AtomicU64, more_than: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while what.load(Ordering::Relaxed) <= more_than {
            assert!(Instant::now() < deadline, "the guest made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn finish(mut self, vcpu: &KvmVcpu) -> String {
        self.stop.store(true, Ordering::Release);
        vcpu.signal_handle().kick();
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_scripted_client_stops_inspects_breaks_steps_and_interrupts_a_run_loop() {
    let (vm, vcpu) = long_mode("counter");
    // The user's own guest debug: a single step per instruction, each a Debug exit.
    vcpu.set_guest_debug(&GuestDebug {
        enable: true,
        single_step: true,
        ..GuestDebug::default()
    })
    .unwrap();
    let run = Loop::start(vcpu.clone());
    run.wait_for(&run.debugs, 10);
    run.wait_for(&run.ios, 2);

    let mut server = GdbServer::start(&vm, "127.0.0.1", 0, false).unwrap();
    let mut gdb = Client::connect(server.port());
    // Attaching stops the guest.
    assert!(gdb.ask("?").starts_with('T'), "stopped on attach");
    let debugs_attached = run.debugs.load(Ordering::Relaxed);
    assert_eq!(gdb.ask("qfThreadInfo"), "m01");
    assert_eq!(gdb.ask("qsThreadInfo"), "l");
    assert!((0x1000..0x1011).contains(&gdb.rip()));
    // The guest's code, by virtual address.
    assert_eq!(gdb.ask("m1000,5"), "48ffc34889");

    // A hardware breakpoint at the loop's head.
    assert_eq!(gdb.ask("Z1,1000,1"), "OK");
    let stop = gdb.ask("vCont;c");
    assert!(stop.starts_with("T05") && stop.contains("hwbreak"), "{stop}");
    assert_eq!(gdb.rip(), 0x1000);
    // As gdb does: step off the breakpoint without it (an instruction breakpoint traps
    // before the instruction), then put it back and go round once more.
    assert_eq!(gdb.ask("z1,1000,1"), "OK");
    assert!(gdb.ask("vCont;s:1").starts_with("T05"));
    assert_eq!(gdb.rip(), 0x1003, "one instruction: inc rbx");
    let before = run.ios.load(Ordering::Relaxed);
    assert_eq!(gdb.ask("Z1,1000,1"), "OK");
    assert!(gdb.ask("vCont;c").contains("hwbreak"));
    assert_eq!(gdb.rip(), 0x1000);
    assert_eq!(
        run.ios.load(Ordering::Relaxed),
        before + 1,
        "one more round of the loop"
    );
    assert_eq!(gdb.ask("z1,1000,1"), "OK");

    // Ctrl-C while it runs.
    gdb.send("vCont;c");
    std::thread::sleep(Duration::from_millis(50));
    gdb.0.write_all(&[0x03]).unwrap();
    let stop = gdb.reply();
    assert!(stop.starts_with("T02"), "SIGINT: {stop}");

    // None of the stub's debug exits reached the user's loop.
    assert_eq!(run.debugs.load(Ordering::Relaxed), debugs_attached);
    assert_eq!(gdb.ask("D"), "OK");
    // Detached: the user's single-stepping is back.
    run.wait_for(&run.debugs, debugs_attached + 10);
    server.close();
    assert_eq!(run.finish(&vcpu), "stopped");
}

#[test]
fn kill_closes_the_vm_and_a_run_loop_sees_it_closed() {
    let (vm, vcpu) = long_mode("counter");
    let run = Loop::start(vcpu.clone());
    run.wait_for(&run.ios, 2);
    let server = GdbServer::start(&vm, "127.0.0.1", 0, false).unwrap();
    let mut gdb = Client::connect(server.port());
    assert!(gdb.ask("?").starts_with('T'));
    gdb.send("k");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !vm.is_closed() {
        assert!(Instant::now() < deadline, "kill did not close the VM");
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished = run.finish(&vcpu);
    assert!(finished.contains("Closed") || finished == "stopped", "{finished}");
    drop(server);
}

#[test]
fn wait_holds_every_vcpu_before_its_first_instruction() {
    let (vm, vcpu) = long_mode("counter");
    let server = GdbServer::start(&vm, "127.0.0.1", 0, true).unwrap();
    let run = Loop::start(vcpu.clone());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(run.ios.load(Ordering::Relaxed), 0, "nothing ran before gdb");
    let mut gdb = Client::connect(server.port());
    assert!(gdb.ask("?").starts_with('T'));
    assert_eq!(gdb.rip(), 0x1000);
    assert_eq!(gdb.ask("D"), "OK");
    run.wait_for(&run.ios, 10);
    drop(server);
    assert_eq!(run.finish(&vcpu), "stopped");
}
