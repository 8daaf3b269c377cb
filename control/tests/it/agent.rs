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
    let mut agent = spawn_agent(&control.api, key, args);
    let mut line = String::new();
    BufReader::new(agent.child().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with(says), "{line}");
    agent
}

/// Starts `innergate ARGS --direct` (the mode where the data plane dials the upstream
/// and the agent holds a lease; tunnels are tests/it/tunnel) against the API at
/// `api_url`, its stdout piped.
fn spawn_agent(api_url: &str, key: &str, args: &[&str]) -> KillOnDrop {
    let child = Command::new(innergate_bin())
        .args(args)
        .arg("--direct")
        .env("INNERGATE_API_URL", api_url)
        .env("INNERGATE_API_KEY", key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
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
    let _tls = start_agent_as(
        &control,
        &key,
        &["tls", &port, "--url", "tls://secure.example.com:9443"],
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

// === signals ===

const AGENT: [&str; 4] = ["http", "9", "--url", "http://agent.example.com"];

/// Control whose leases outlive every test wait: an endpoint that is gone was
/// deleted, not expired.
fn long_lease_control(dir: &std::path::Path) -> (Control, String) {
    let control = Control::start_with_lease(dir, None, "60s");
    let key = control.account("alice");
    (control, key)
}

fn assert_no_endpoint(control: &Control, key: &str) {
    let left = control.client(key).list(None, None).unwrap().endpoints;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn sigterm_right_after_start_leaves_no_endpoint() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (control, key) = long_lease_control(dir.path());
    for _ in 0..3 {
        let mut agent = spawn_agent(&control.api, &key, &AGENT);
        agent.signal(libc::SIGTERM);
        let status = agent.wait_exit("the agent to stop");
        // Before its listener is installed the signal ends it at once (nothing made
        // yet); after, it removes what it made and exits cleanly.
        assert!(
            status.success() || status.signal() == Some(libc::SIGTERM),
            "{status}"
        );
        assert_no_endpoint(&control, &key);
    }
}

#[test]
fn sigterm_while_running_removes_the_endpoint_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (control, key) = long_lease_control(dir.path());
    let mut agent = start_agent_as(
        &control,
        &key,
        &AGENT,
        "http://agent.example.com -> http://127.0.0.1:9",
    );
    assert_eq!(
        control
            .client(&key)
            .list(None, None)
            .unwrap()
            .endpoints
            .len(),
        1
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit("the agent to stop").success());
    assert_no_endpoint(&control, &key);
}

#[test]
fn sigterm_during_the_create_removes_the_endpoint_once_created() {
    let dir = tempfile::tempdir().unwrap();
    let (control, key) = long_lease_control(dir.path());
    let slow = SlowApi::start(&control, |line| line.starts_with("POST /endpoints "));
    let mut agent = spawn_agent(&slow.url, &key, &AGENT);
    eventually("the agent's create to be held", || slow.held() == 1);
    agent.signal(libc::SIGTERM);
    // The create goes through after the signal: the agent deletes what it made.
    slow.open();
    assert!(agent.wait_exit("the agent to stop").success());
    assert_no_endpoint(&control, &key);
}

#[test]
fn sigterm_during_a_slow_renewal_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let (control, key) = long_lease_control(dir.path());
    let slow = SlowApi::start(&control, |line| {
        line.starts_with("POST /endpoints/") && line.contains("/lease ")
    });
    let mut agent = spawn_agent(&slow.url, &key, &AGENT);
    eventually("a renewal to be held", || slow.held() == 1);
    agent.signal(libc::SIGTERM);
    // The renewal is still held: the agent does not wait for it.
    assert!(agent.wait_exit("the agent to stop").success());
    assert_eq!(slow.held(), 1);
    assert_no_endpoint(&control, &key);
}

// === impl SlowApi ===

/// A proxy in front of control's API that holds the requests whose request line
/// `gated` picks until the test opens it: the agent is caught inside that call.
struct SlowApi {
    url: String,
    gate: std::sync::Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    /// (requests held so far, open)
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

impl SlowApi {
    fn start(control: &Control, gated: fn(&str) -> bool) -> SlowApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let gate = std::sync::Arc::new(Gate::default());
        let (upstream, held) = (control.addr(), gate.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let gate = held.clone();
                std::thread::spawn(move || relay(client, upstream, gated, &gate));
            }
        });
        SlowApi { url, gate }
    }

    fn held(&self) -> usize {
        self.gate.state.lock().unwrap().0
    }

    fn open(&self) {
        self.gate.state.lock().unwrap().1 = true;
        self.gate.changed.notify_all();
    }
}

impl Drop for SlowApi {
    fn drop(&mut self) {
        self.open();
    }
}

/// Passes requests of one client connection to `upstream`, one at a time.
fn relay(
    client: std::net::TcpStream,
    upstream: std::net::SocketAddr,
    gated: fn(&str) -> bool,
    gate: &Gate,
) {
    use std::io::{Read, Write};
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    while let Some(head) = read_head(&mut reader) {
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if gated(head.lines().next().unwrap_or("")) {
            let mut state = gate.state.lock().unwrap();
            state.0 += 1;
            while !state.1 {
                state = gate.changed.wait(state).unwrap();
            }
        }
        let Ok(mut to) = std::net::TcpStream::connect(upstream) else {
            return;
        };
        let mut request = format!("{head}\r\n").into_bytes();
        request.extend_from_slice(&body);
        if to.write_all(&request).is_err() {
            return;
        }
        let Some(response) = Response::read_from(&mut BufReader::new(to)) else {
            return;
        };
        let mut out = format!("HTTP/1.1 {} Relayed\r\n", response.status);
        for (name, value) in &response.headers {
            if !["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", response.body.len()));
        let mut out = out.into_bytes();
        out.extend_from_slice(&response.body);
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}
