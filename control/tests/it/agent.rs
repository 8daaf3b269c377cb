//! Agent mode: an endpoint that lives as long as its agent.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::*;

fn start_agent(control: &Control, key: &str, upstream: &str) -> KillOnDrop {
    start_agent_as(
        control,
        key,
        &["http", upstream, "--url", "http://agent.example.com"],
        "http://agent.example.com -> http://127.0.0.1:",
    )
}

/// Starts `innergate ARGS` and waits for its first line, which starts with `says`.
fn start_agent_as(control: &Control, key: &str, args: &[&str], says: &str) -> KillOnDrop {
    let mut child = Command::new(innergate_bin())
        .args(args)
        .env("INNERGATE_API_URL", &control.api)
        .env("INNERGATE_API_KEY", key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with(says), "{line}");
    KillOnDrop::new(child)
}

#[test]
fn an_agent_endpoint_lives_while_its_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(dir.path());
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let key = control.account("alice");
    let api = control.client(&key);
    let upstream = backend("from the agent's service");
    let port = upstream.port().to_string();

    // Ctrl-C removes the endpoint.
    let agent = start_agent(&control, &key, &port);
    assert_eq!(
        http_get(dp.http_addr(), "agent.example.com"),
        (200, "from the agent's service".into())
    );
    // Renewals keep it past more than one lease length (3 s): the agent renews at most
    // once a second, so its fourth renewal comes after its first lease ran out.
    let control_addr: std::net::SocketAddr =
        control.api.trim_start_matches("http://").parse().unwrap();
    // The agent holds it: it lives on the lease the agent renews.
    let listed = api.list(None, None).unwrap().endpoints;
    assert_eq!(listed[0].held_by, innergate::endpoint::HeldBy::Agent);
    eventually("four lease renewals", || {
        get(control_addr, "control", "/metrics")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("innergate_control_lease_renewals_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n >= 4)
    });
    assert_eq!(api.list(None, None).unwrap().endpoints.len(), 1);
    let mut agent = agent;
    agent.signal(libc::SIGINT);
    let out = agent.take().wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(api.list(None, None).unwrap().endpoints.is_empty());

    // kill -9: the lease expires and control removes it.
    let mut agent = start_agent(&control, &key, &port);
    assert_eq!(api.list(None, None).unwrap().endpoints.len(), 1);
    let addr = dp.http_addr();
    let mut child = agent.take();
    child.kill().unwrap();
    child.wait().unwrap();
    eventually("the lease to expire", || {
        api.list(None, None).unwrap().endpoints.is_empty()
    });
    // It was the only public endpoint: the data plane closes the listener.
    eventually("the data plane to drop it", || {
        std::net::TcpStream::connect(addr).is_err()
    });
}

/// Echoes bytes until EOF.
fn echo() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A minimal ClientHello naming `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[1; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let mut entry = vec![0];
    entry.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    entry.extend_from_slice(sni.as_bytes());
    let mut list = (entry.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&entry);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&list);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[test]
fn tcp_and_tls_agents_work_end_to_end_through_the_cli() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start_with(
        dir.path(),
        &["--port-map", "15432=0", "--port-map", "9443=0"],
    );
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let key = control.account("alice");
    let port = echo().port().to_string();
    let _tcp = start_agent_as(
        &control,
        &key,
        &["tcp", &port, "--url", "tcp://db.example.com:15432"],
        "tcp://db.example.com:15432 -> tcp://127.0.0.1:",
    );
    // `--direct`: the data plane dials the upstream itself, as without the flag (for
    // now).
    let _tls = start_agent_as(
        &control,
        &key,
        &[
            "tls",
            &port,
            "--url",
            "tls://secure.example.com:9443",
            "--direct",
        ],
        "tls://secure.example.com:9443 -> tcp://127.0.0.1:",
    );
    // tcp: bytes both ways.
    let mut s = std::net::TcpStream::connect(dp.listener(15432)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"over tcp").unwrap();
    let mut back = [0u8; 8];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"over tcp");
    // tls: routed by SNI and passed through untouched (the echo returns the hello).
    let hello = client_hello("secure.example.com");
    let mut s = std::net::TcpStream::connect(dp.listener(9443)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&hello).unwrap();
    let mut back = vec![0u8; hello.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, hello);
}
