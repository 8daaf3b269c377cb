//! tcp endpoints: bytes both ways, half-close, forward-internal, on_tcp_connect.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::support::*;

const PORT: u16 = 15432;

/// Echoes everything; after the client's end of stream, says `bye:<tag>` and closes.
pub fn echo_server(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(format!("bye:{tag}").as_bytes());
                let _ = s.shutdown(Shutdown::Both);
            });
        }
    });
    addr
}

fn tcp_dp(endpoints: Vec<innergate_table::EndpointRecord>, extra: &[&str]) -> DataPlane {
    let mut args = vec!["--port-map", "15432=0"];
    args.extend_from_slice(extra);
    let mut dp = DataPlane::start_with(&args);
    dp.push(endpoints);
    dp
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Sends `hello`, reads it back, half-closes, reads the farewell.
fn echo_roundtrip(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    rest
}

#[test]
fn a_public_tcp_endpoint_echoes_and_honours_half_close() {
    let echo = echo_server("direct");
    let dp = tcp_dp(
        vec![agent(
            "ep_db",
            "acme",
            "tcp://db.example.com:15432",
            format!("tcp://{echo}"),
        )],
        &[],
    );
    assert_eq!(echo_roundtrip(dp.listener(PORT)), "bye:direct");
}

#[test]
fn tcp_forward_internal_picks_a_pool_member_per_connection() {
    let (a, b) = (echo_server("a"), echo_server("b"));
    let public = "on_tcp_connect:\n  - actions:\n      - type: forward-internal\n        config: {url: 'tcp://db.internal:5432'}\n";
    let dp = tcp_dp(
        vec![
            cloud("ep_public", "acme", "tcp://db.example.com:15432", public),
            pooled(agent(
                "ep_a",
                "acme",
                "tcp://db.internal:5432",
                format!("tcp://{a}"),
            )),
            pooled(agent(
                "ep_b",
                "acme",
                "tcp://db.internal:5432",
                format!("tcp://{b}"),
            )),
        ],
        &[],
    );
    let seen: std::collections::HashSet<String> =
        (0..40).map(|_| echo_roundtrip(dp.listener(PORT))).collect();
    assert_eq!(
        seen,
        ["bye:a".to_string(), "bye:b".to_string()]
            .into_iter()
            .collect()
    );
}

#[test]
fn on_tcp_connect_refuses_by_address_or_deny() {
    let echo = echo_server("x");
    let deny_me = "on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config: {deny: ['127.0.0.0/8']}\n";
    let dp = tcp_dp(
        vec![with_policy(
            agent(
                "ep_db",
                "acme",
                "tcp://db.example.com:15432",
                format!("tcp://{echo}"),
            ),
            deny_me,
        )],
        &[],
    );
    let mut s = connect(dp.listener(PORT));
    let _ = s.write_all(b"hello");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "a refused connection gets no bytes");

    let deny = "on_tcp_connect:\n  - actions: [{type: deny}]\n";
    let dp = tcp_dp(
        vec![cloud("ep_db", "acme", "tcp://db.example.com:15432", deny)],
        &[],
    );
    let mut s = connect(dp.listener(PORT));
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "deny closes the connection");

    let allow = "on_tcp_connect:\n  - expressions: [\"conn.client_ip == '127.0.0.1'\"]\n    actions:\n      - type: restrict-ips\n        config: {allow: ['127.0.0.1']}\n";
    let dp = tcp_dp(
        vec![with_policy(
            agent(
                "ep_db",
                "acme",
                "tcp://db.example.com:15432",
                format!("tcp://{echo}"),
            ),
            allow,
        )],
        &[],
    );
    assert_eq!(echo_roundtrip(dp.listener(PORT)), "bye:x");
}

#[test]
fn on_tcp_connect_runs_for_http_endpoints_once_per_connection() {
    let policy = "on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config: {allow: ['10.0.0.0/8']}\non_http_request:\n  - actions: [{type: custom-response, config: {body: hi}}]\n";
    let open = "on_tcp_connect:\n  - actions:\n      - type: log\n        config: {metadata: {who: '${conn.client_ip}'}}\non_http_request:\n  - actions: [{type: custom-response, config: {body: hi}}]\n";
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud("ep_closed", "acme", "http://closed.example.com", policy),
        cloud("ep_open", "acme", "http://open.example.com", open),
    ]);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: closed.example.com\r\n\r\n");
    assert!(
        conn.try_read_response().is_none(),
        "closed without an answer"
    );
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..3 {
        assert_eq!(conn.get("open.example.com", "/").text(), "hi");
    }
}

/// Streams `size` bytes to the echo server and checks what comes back, by checksum.
fn stream_both_ways(addr: SocketAddr, size: usize, tag: &str) {
    let s = connect(addr);
    let mut writer = s.try_clone().unwrap();
    let sent = std::thread::spawn(move || {
        let mut sum = 0u64;
        let mut chunk = vec![0u8; 1 << 20];
        for i in 0..size / chunk.len() {
            for (j, b) in chunk.iter_mut().enumerate() {
                *b = (i * 31 + j * 7) as u8;
            }
            sum = chunk
                .iter()
                .fold(sum, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
            writer.write_all(&chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
        sum
    });
    let mut reader = s;
    let mut received = 0usize;
    let mut sum = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while received < size {
        let n = reader
            .read(&mut buf[..(size - received).min(1 << 16)])
            .unwrap();
        assert!(n > 0, "stream ended after {received} bytes");
        sum = buf[..n]
            .iter()
            .fold(sum, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
        received += n;
    }
    assert_eq!(sum, sent.join().unwrap(), "checksums differ");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, format!("bye:{tag}"));
}

#[test]
fn large_streams_cross_both_ways_intact() {
    let echo = echo_server("big");
    let dp = tcp_dp(
        vec![agent(
            "ep_db",
            "acme",
            "tcp://db.example.com:15432",
            format!("tcp://{echo}"),
        )],
        &[],
    );
    stream_both_ways(dp.listener(PORT), 256 << 20, "big");
}

#[test]
fn splice_forwarding_keeps_bytes_half_close_and_idle_timeout() {
    let echo = echo_server("spliced");
    let dp = tcp_dp(
        vec![agent(
            "ep_db",
            "acme",
            "tcp://db.example.com:15432",
            format!("tcp://{echo}"),
        )],
        &["--tcp-forwarding", "splice", "--tcp-idle-timeout", "500ms"],
    );
    assert_eq!(echo_roundtrip(dp.listener(PORT)), "bye:spliced");
    stream_both_ways(dp.listener(PORT), 128 << 20, "spliced");
    let mut s = connect(dp.listener(PORT));
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    let start = std::time::Instant::now();
    let mut rest = Vec::new();
    assert!(
        s.read_to_end(&mut rest).is_ok(),
        "closed by the idle timeout"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn idle_tcp_connections_are_closed() {
    let echo = echo_server("idle");
    let dp = tcp_dp(
        vec![agent(
            "ep_db",
            "acme",
            "tcp://db.example.com:15432",
            format!("tcp://{echo}"),
        )],
        &["--tcp-idle-timeout", "500ms"],
    );
    let mut s = connect(dp.listener(PORT));
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    let start = std::time::Instant::now();
    let mut rest = Vec::new();
    // EOF, not the test's own 20 s read timeout, ends this read.
    let read = s.read_to_end(&mut rest);
    assert!(read.is_ok(), "{read:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "closed after {:?}",
        start.elapsed()
    );
    // The upstream saw its side shut and may have said goodbye; nothing else came.
    assert!(rest.is_empty() || rest == b"bye:idle", "{rest:?}");
}

#[test]
fn connect_and_response_phases_run_set_vars_log_and_close_connection() {
    let echo = echo_server("vars");
    // on_tcp_connect: set-vars feeds a later rule's expression; log writes a line;
    // close-connection runs only for the port that does not match.
    let tcp_policy = r#"
on_tcp_connect:
  - actions:
      - type: set-vars
        config: {vars: {origin: "${conn.client_ip}:${conn.server_port}"}}
      - type: log
        config: {metadata: {origin: "${vars.origin}"}}
  - expressions: ["!vars.origin.startsWith('127.0.0.1:')"]
    actions: [{type: close-connection}]
"#;
    let closing = "on_tcp_connect:\n  - expressions: [\"conn.client_ip == '127.0.0.1'\"]\n    actions: [{type: close-connection}]\n";
    let http_policy = r#"
on_http_request:
  - actions: [{type: custom-response, config: {status_code: 201, body: made}}]
on_http_response:
  - expressions: ["res.status_code == 201"]
    actions:
      - type: set-vars
        config: {vars: {kind: created}}
  - expressions: ["has(vars.kind)"]
    actions:
      - type: add-headers
        config: {headers: {x-kind: "${vars.kind}"}}
"#;
    let mut dp = DataPlane::start_with_env(
        &["--port-map", "15432=0", "--port-map", "15433=0"],
        &[("RUST_LOG", "warn,innergate::policy=info")],
    );
    dp.push(vec![
        with_policy(
            agent(
                "ep_db",
                "acme",
                "tcp://db.example.com:15432",
                format!("tcp://{echo}"),
            ),
            tcp_policy,
        ),
        with_policy(
            agent(
                "ep_closing",
                "acme",
                "tcp://c.example.com:15433",
                format!("tcp://{echo}"),
            ),
            closing,
        ),
        cloud("ep_web", "acme", "http://app.example.com", http_policy),
    ]);
    assert_eq!(echo_roundtrip(dp.listener(PORT)), "bye:vars");
    let mut s = connect(dp.listener(15433));
    let mut got = Vec::new();
    let _ = s.write_all(b"hello");
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "close-connection in on_tcp_connect closes");
    let log = dp.log();
    let line = log
        .lines()
        .find(|l| l.contains("policy_log"))
        .expect("a log line");
    assert!(line.contains("\"origin\":\"127.0.0.1:"), "{line}");
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!((res.status, res.header("x-kind")), (201, Some("created")));
}
