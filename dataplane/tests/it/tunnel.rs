//! Agent tunnels at the data plane: the hosted service's own Rust SDK (a real agent,
//! built from the `ngrok` crate in test-agents/ngrok-rs) dials the tunnel listener,
//! authenticates with an authtoken whose hash the table carries, binds endpoints, and
//! serves their traffic over streams the data plane opens. This suite plays control
//! itself: it subscribes to the data plane's tunnel calls and answers each Bind with a
//! table that has the endpoint, as control's validation would.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use innergate_table::link::{CallsClient, ControlClient};
use innergate_table::tunnel_calls::{TunnelAnswer, TunnelCall};
use innergate_table::wire::{AuthtokenRecord, TableMessage};
use innergate_table::EndpointRecord;

use crate::support::*;

const TOKEN: &str = "igt_test_token_of_acme";

fn sha256_hex(s: &str) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    digest.as_ref().iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A CA and a tunnel certificate for 127.0.0.1, in files.
struct TunnelPki {
    dir: tempfile::TempDir,
}

impl TunnelPki {
    fn new() -> TunnelPki {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("innergate tunnel test CA");
        ca.write(dir.path());
        ca.write_leaf(dir.path(), "tunnel", &["127.0.0.1", "localhost"]);
        TunnelPki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A data plane with a tunnel listener on an OS-chosen port.
    fn start(&self, extra: &[&str]) -> DataPlane {
        let cert = self.path("tunnel.crt");
        let key = self.path("tunnel.key");
        let mut args = vec![
            "--tunnel",
            "127.0.0.1:0",
            "--tunnel-cert",
            cert.to_str().unwrap(),
            "--tunnel-key",
            key.to_str().unwrap(),
            "--tunnel-heartbeat",
            "300ms",
            "--tunnel-timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        let mut dp = DataPlane::start_with(&args);
        dp.ack = dp.control().status().unwrap();
        dp
    }
}

/// What this suite's stand-in for control holds: the table it pushes.
struct ControlState {
    version: u64,
    endpoints: Vec<EndpointRecord>,
    authtokens: Vec<AuthtokenRecord>,
    next_id: u32,
    /// Every Bind seen, for assertions.
    binds: Vec<String>,
}

/// Stands in for control: pushes tables and answers tunnel calls.
struct FakeControl {
    socket: PathBuf,
    state: Arc<Mutex<ControlState>>,
}

impl FakeControl {
    fn start(dp: &DataPlane, endpoints: Vec<EndpointRecord>) -> FakeControl {
        let control = FakeControl {
            socket: dp.socket(),
            state: Arc::new(Mutex::new(ControlState {
                version: 100,
                endpoints,
                authtokens: vec![AuthtokenRecord {
                    id: "at_acme".into(),
                    account: "acme".into(),
                    sha256: sha256_hex(TOKEN),
                }],
                next_id: 0,
                binds: Vec::new(),
            })),
        };
        push(&control.socket, &mut control.state.lock().unwrap());
        let mut calls = CallsClient::subscribe(&control.socket, TIMEOUT).unwrap();
        let (socket, state) = (control.socket.clone(), control.state.clone());
        thread::spawn(move || {
            while let Ok(Some((id, call))) = calls.next_call() {
                let answer = answer(&socket, &mut state.lock().unwrap(), call);
                if calls.answer(id, answer).is_err() {
                    return;
                }
            }
        });
        control
    }

    fn binds(&self) -> Vec<String> {
        self.state.lock().unwrap().binds.clone()
    }

    fn endpoint_ids(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.endpoints.iter().map(|e| e.id.clone()).collect()
    }
}

/// Pushes the table; a data plane that went away (the test is over) is no error.
fn push(socket: &Path, st: &mut ControlState) {
    st.version += 1;
    let applied = ControlClient::connect(socket, TIMEOUT).map(|mut c| {
        c.apply(TableMessage {
            version: st.version,
            endpoints: st.endpoints.clone(),
            authtokens: st.authtokens.clone(),
        })
    });
    if let Ok(Err(e)) = applied {
        panic!("table refused: {e}");
    }
}

/// Where URL port 80 is served now.
fn http_listener(dp: &DataPlane) -> std::net::SocketAddr {
    let ack = dp.control().status().unwrap();
    let l = ack.listeners.iter().find(|l| l.url_port == 80).unwrap();
    l.local_addr.parse().unwrap()
}

fn answer(socket: &Path, st: &mut ControlState, call: TunnelCall) -> TunnelAnswer {
    match call {
        TunnelCall::Bind(b) => {
            st.binds.push(b.url.clone());
            let taken = st
                .endpoints
                .iter()
                .any(|e| e.url == b.url && (!e.pooling_enabled || !b.pooling_enabled));
            if taken && b.endpoint_id.is_empty() {
                return TunnelAnswer::Failed(format!("{} is already in use", b.url));
            }
            let id = if b.endpoint_id.is_empty() {
                st.next_id += 1;
                format!("ep_tunnel{}", st.next_id)
            } else {
                b.endpoint_id.clone()
            };
            if !st.endpoints.iter().any(|e| e.id == id) {
                st.endpoints.push(EndpointRecord {
                    id: id.clone(),
                    account: b.account.clone(),
                    url: b.url.clone(),
                    binding: b.binding.clone(),
                    pooling_enabled: b.pooling_enabled,
                    traffic_policy: b.traffic_policy.clone(),
                    tunnel: true,
                    ..Default::default()
                });
                push(socket, st);
            }
            TunnelAnswer::Bound {
                endpoint_id: id,
                url: b.url,
            }
        }
        TunnelCall::Released { endpoint_ids } => {
            st.endpoints.retain(|e| !endpoint_ids.contains(&e.id));
            push(socket, st);
            TunnelAnswer::Done
        }
        _ => TunnelAnswer::Done,
    }
}

/// The Rust SDK agent, built by the test script next to the data plane binary (or
/// named by INNERGATE_NGROK_RS_AGENT).
fn sdk_agent_binary() -> PathBuf {
    if let Ok(p) = std::env::var("INNERGATE_NGROK_RS_AGENT") {
        return PathBuf::from(p);
    }
    let dp = PathBuf::from(env!("CARGO_BIN_EXE_innergate-dataplane"));
    let agent = dp.with_file_name("ngrok-sdk-agent");
    assert!(
        agent.exists(),
        "the Rust SDK test agent is not built at {}: run \
         `cargo build -p innergate-ngrok-rs-agent` (scripts/test.sh does) or set \
         INNERGATE_NGROK_RS_AGENT",
        agent.display()
    );
    agent
}

/// A running SDK agent; killed when dropped.
struct SdkAgent {
    child: Child,
    /// (id, url) of each endpoint it bound.
    bound: Vec<(String, String)>,
}

impl SdkAgent {
    fn start(server: &str, ca: &Path, token: &str, endpoints: &[&str]) -> Result<SdkAgent, String> {
        let mut cmd = Command::new(sdk_agent_binary());
        cmd.args(["--server-addr", server])
            .arg("--ca-cert")
            .arg(ca)
            .args(["--authtoken", token]);
        for e in endpoints {
            cmd.args(["--endpoint", e]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the SDK agent starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut err = child.stderr.take().unwrap();
            let sink = stderr.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut bound = Vec::new();
        loop {
            match rx.recv_timeout(TIMEOUT) {
                Ok(line) if line == "READY" => break,
                Ok(line) => {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!("the agent printed {line:?}"));
                    };
                    bound.push((
                        v["id"].as_str().unwrap_or_default().to_string(),
                        v["url"].as_str().unwrap_or_default().to_string(),
                    ));
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    thread::sleep(Duration::from_millis(50));
                    return Err(format!(
                        "the agent did not get ready ({status:?}): {}",
                        stderr.lock().unwrap()
                    ));
                }
            }
        }
        Ok(SdkAgent { child, bound })
    }

    /// Closes the session cleanly (stdin EOF) and waits for the exit.
    fn close(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SdkAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn forwarding_to(url: &str) -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: forward-internal\n        config:\n          url: {url}\n"
    )
}

#[test]
fn the_rust_sdk_serves_an_internal_endpoint_through_a_public_one() {
    let pki = TunnelPki::new();
    let backend = Backend::text("from behind the tunnel");
    let admin = crate::admin::free_addr();
    let dp = pki.start(&["--admin", &admin.to_string()]);
    let tunnel = dp.ack.tunnel_addr.clone();
    assert!(
        !tunnel.is_empty(),
        "the data plane reports its tunnel address"
    );
    let control = FakeControl::start(
        &dp,
        vec![cloud(
            "ep_public",
            "acme",
            "http://app.example.com",
            &forwarding_to("https://svc.internal"),
        )],
    );
    let forward = format!("http://{}", backend.addr);
    let agent = SdkAgent::start(
        &tunnel,
        &pki.path("ca.pem"),
        TOKEN,
        &[&format!("https,https://svc.internal,{forward},internal")],
    )
    .unwrap();
    assert_eq!(agent.bound.len(), 1, "{:?}", agent.bound);
    assert_eq!(agent.bound[0].1, "https://svc.internal");
    assert_eq!(control.binds(), vec!["https://svc.internal".to_string()]);
    let addr = http_listener(&dp);
    // Requests land on both workers; each reaches the agent's single session.
    for _ in 0..20 {
        let r = get(addr, "app.example.com", "/hello");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "from behind the tunnel");
    }
    let seen = backend.requests();
    assert!(
        seen.iter().any(|r| r.target == "/hello"),
        "{} requests",
        seen.len()
    );
    agent.close();
    eventually("the endpoint to go offline after the SDK closed", || {
        let r = get(addr, "app.example.com", "/hello");
        r.status == 404
    });
    eventually("the data plane to release the endpoint to control", || {
        control.endpoint_ids().iter().all(|id| id == "ep_public")
    });
}

#[test]
fn a_wrong_authtoken_is_refused() {
    let pki = TunnelPki::new();
    let dp = pki.start(&[]);
    let _control = FakeControl::start(&dp, vec![]);
    let err = SdkAgent::start(
        &dp.ack.tunnel_addr,
        &pki.path("ca.pem"),
        "igt_not_a_token",
        &["https,https://svc.internal,http://127.0.0.1:9,internal"],
    )
    .err()
    .expect("refused");
    assert!(err.contains("authtoken"), "{err}");
}

/// A muxado frame, as a hostile agent would write it.
fn frame(typ: u8, flags: u8, stream: u32, body: &[u8]) -> Vec<u8> {
    let word = ((body.len() as u32) << 8) | (u32::from(typ) << 4) | u32::from(flags);
    let mut out = word.to_be_bytes().to_vec();
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Whether the server ended the connection (EOF or an error) before the read timeout.
fn ends(read: &mut impl Read) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match read.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn bad_input_on_the_tunnel_listener_is_bounded_and_slows_nothing_else() {
    let pki = TunnelPki::new();
    let dp = pki.start(&["--tls-handshake-timeout", "500ms"]);
    let tunnel: std::net::SocketAddr = dp.ack.tunnel_addr.parse().unwrap();
    let hello = "on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: still here}\n";
    let _control = FakeControl::start(
        &dp,
        vec![cloud("ep_hello", "acme", "http://hello.example.com", hello)],
    );
    let http = http_listener(&dp);

    // Not TLS at all: an alert and a close.
    let mut garbage = std::net::TcpStream::connect(tunnel).unwrap();
    garbage.set_read_timeout(Some(TIMEOUT)).unwrap();
    use std::io::Write as _;
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(ends(&mut garbage), "garbage is answered with a close");

    // A handshake that never comes: closed after the handshake timeout.
    let mut silent = std::net::TcpStream::connect(tunnel).unwrap();
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(ends(&mut silent), "a silent client is closed");

    // TLS, then a frame of an unknown type: the session ends (a GOAWAY, then EOF).
    let ca = std::fs::read(pki.path("ca.pem")).unwrap();
    let config = tls_client_config_pem(&ca);
    let mut bad = tls_connect(&config, tunnel, "127.0.0.1");
    bad.write_all(&frame(9, 0, 1, b"")).unwrap();
    assert!(ends(&mut bad), "a bad frame ends the session");

    // A flood of streams that are never served: beyond the bound they are refused,
    // the session lives, and the rest of the data plane does not notice.
    let mut flood = tls_connect(&config, tunnel, "127.0.0.1");
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        // Heartbeat streams stay open (they are echoed until closed).
        burst.extend(frame(1, 0x2, 2 * i + 1, &0xFFFF_FFFFu32.to_be_bytes()));
    }
    flood.write_all(&burst).unwrap();
    // More data than the window allows on one stream: that stream is reset.
    flood
        .write_all(&frame(1, 0x2, 5001, &vec![0u8; 300 * 1024][..]))
        .unwrap_or(());
    for _ in 0..20 {
        assert_eq!(get(http, "hello.example.com", "/").text(), "still here");
    }
    // The session answered the streams beyond its bound with RST StreamsExhausted.
    let mut seen = Vec::new();
    let mut buf = [0u8; 16384];
    let refused = loop {
        let n = flood.read(&mut buf).expect("the flooding session stays up");
        assert!(n > 0, "the flooding session stays up");
        seen.extend_from_slice(&buf[..n]);
        let mut at = 0;
        let mut found = false;
        while seen.len() >= at + 8 {
            let word = u32::from_be_bytes(seen[at..at + 4].try_into().unwrap());
            let (len, typ) = ((word >> 8) as usize, (word >> 4) & 0xF);
            if seen.len() < at + 8 + len {
                break;
            }
            if typ == 0 && len == 4 {
                let code = u32::from_be_bytes(seen[at + 8..at + 12].try_into().unwrap());
                found |= code == 0x0C;
            }
            at += 8 + len;
        }
        if found {
            break true;
        }
    };
    assert!(refused);
}
