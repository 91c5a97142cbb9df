//! The vsock device's unit tests: packets from a guest and host connections, without
//! a transport.

use super::*;

pub(super) fn device(name: &str) -> (Vsock, PathBuf) {
    let uds = std::env::temp_dir().join(format!("vcpu-vsock-test-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&uds);
    (Vsock::new(3, &uds).unwrap(), uds)
}

pub(super) fn from(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: 3,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        kind: TYPE_STREAM,
        op,
        buf_alloc: 4096,
        ..Default::default()
    }
}

fn last_op(v: &mut Vsock) -> Option<u16> {
    v.control.pop_back().map(|h| h.op)
}

#[test]
fn strangers_get_resets() {
    let (mut v, _) = device("strangers");
    v.take_packet(
        Header {
            dst_cid: 9,
            ..from(OP_REQUEST, 1, 2)
        },
        &[],
    );
    assert_eq!(last_op(&mut v), Some(OP_RST), "a CID that is not the host's");
    v.take_packet(
        Header {
            src_cid: 4,
            ..from(OP_REQUEST, 1, 2)
        },
        &[],
    );
    assert_eq!(last_op(&mut v), Some(OP_RST), "a source that is not the guest");
    v.take_packet(from(OP_RW, 1, 2), b"data");
    assert_eq!(last_op(&mut v), Some(OP_RST), "data without a connection");
    v.take_packet(from(OP_REQUEST, 1, 77), &[]);
    assert_eq!(last_op(&mut v), Some(OP_RST), "nobody listens on uds_77");
    v.take_packet(from(OP_RST, 1, 2), &[]);
    assert_eq!(last_op(&mut v), None, "a reset is never answered");
    assert!(v.connections.is_empty());
}

#[test]
fn a_guest_connection_reaches_the_listener_and_overrunning_credit_resets_it() {
    let (mut v, uds) = device("connect");
    let listener = UnixListener::bind(format!("{}_80", uds.display())).unwrap();
    v.take_packet(from(OP_REQUEST, 1000, 80), &[]);
    assert_eq!(last_op(&mut v), Some(OP_RESPONSE));
    let (mut host, _) = listener.accept().unwrap();
    v.take_packet(from(OP_RW, 1000, 80), b"hello");
    let mut got = [0u8; 5];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    // More than the buffer it was given: the connection is reset.
    v.take_packet(from(OP_RW, 1000, 80), &vec![0u8; BUF_ALLOC as usize + 1]);
    assert_eq!(last_op(&mut v), Some(OP_RST));
    assert!(v.connections.is_empty());
    let _ = std::fs::remove_file(format!("{}_80", uds.display()));
}

#[test]
fn a_host_connection_says_connect_or_goes() {
    let (mut v, uds) = device("handshake");
    let mut good = UnixStream::connect(&uds).unwrap();
    let mut bad = UnixStream::connect(&uds).unwrap();
    let mut long = UnixStream::connect(&uds).unwrap();
    good.write_all(b"CONNECT 5000\n").unwrap();
    bad.write_all(b"GET / HTTP/1.1\n").unwrap();
    long.write_all(&[b'x'; 200]).unwrap();
    v.accept();
    let ids: Vec<u64> = v.handshakes.keys().copied().collect();
    for id in ids {
        v.handshake(id);
    }
    let requests: Vec<u32> = v
        .control
        .iter()
        .filter(|h| h.op == OP_REQUEST)
        .map(|h| h.dst_port)
        .collect();
    assert_eq!(requests, [5000]);
    assert!(v.handshakes.is_empty(), "the bad and the endless lines are dropped");
    let mut b = [0u8; 1];
    assert_eq!(bad.read(&mut b).unwrap_or(0), 0, "closed");
}
