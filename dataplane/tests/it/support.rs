//! Test fixtures: the real data plane process, a recording backend, an HTTP client.
//! Everything listens on 127.0.0.1 with OS-chosen ports and stops when dropped.
//!
//! The process guard, the waits, the HTTP client and the TLS client are shared with
//! control's suite (`innergate-test-support`) and re-exported here; the data plane
//! and the backend are this suite's own.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use innergate_table::link::{ControlClient, LinkError};
use innergate_table::wire::{Ack, TableMessage};
use innergate_table::EndpointRecord;

pub use innergate_test_support::*;

// === impl DataPlane ===

/// A running `innergate-dataplane` with its own control socket and state directory.
pub struct DataPlane {
    child: KillOnDrop,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    version: u64,
    pub ack: Ack,
}

impl DataPlane {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut dp = DataPlane {
            child: KillOnDrop(None),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version: 0,
            ack: Ack::default(),
        };
        dp.spawn();
        dp
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Where the process's stderr (its log) goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_innergate-dataplane"));
        if !self.extra.iter().any(|a| a == "--bind") {
            command.args(["--bind", "127.0.0.1"]);
        }
        command
            .args(["--workers", "2", "--port-map", "80=0"])
            .arg("--control-socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = KillOnDrop::spawn_logged(&mut command, &self.log_path());
        let socket = self.socket();
        self.child
            .eventually("the data plane to open its control socket", || {
                ControlClient::connect(&socket, TIMEOUT).is_ok()
            });
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL) and starts it again on the same directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.ack = self.control().status().unwrap();
    }

    /// Sends `signal` to the running process.
    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }

    /// Sends `signal` and waits (up to the test timeout) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        self.child.signal(signal);
        self.child
            .wait_exit(&format!("the data plane to exit after signal {signal}"))
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn control(&self) -> ControlClient {
        ControlClient::connect(&self.socket(), TIMEOUT).unwrap()
    }

    pub fn try_push(&mut self, endpoints: Vec<EndpointRecord>) -> Result<Ack, LinkError> {
        self.version += 1;
        let ack = self.control().apply(TableMessage {
            authtokens: Vec::new(),
            version: self.version,
            endpoints,
        })?;
        self.ack = ack.clone();
        Ok(ack)
    }

    pub fn push(&mut self, endpoints: Vec<EndpointRecord>) -> Ack {
        self.try_push(endpoints).expect("table applied")
    }

    /// Where public URL port `url_port` is served.
    pub fn listener(&self, url_port: u16) -> SocketAddr {
        self.ack
            .listeners
            .iter()
            .find(|l| l.url_port == url_port)
            .unwrap_or_else(|| panic!("no listener for port {url_port}"))
            .local_addr
            .parse()
            .unwrap()
    }

    /// Where public http URL port 80 is served.
    pub fn http_addr(&self) -> SocketAddr {
        self.ack
            .listeners
            .iter()
            .find(|l| l.url_port == 80)
            .expect("a listener for port 80")
            .local_addr
            .parse()
            .unwrap()
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- data plane log ---\n{}", self.log());
        }
    }
}

// === endpoint records ===

pub fn agent(id: &str, account: &str, url: &str, upstream: impl ToString) -> EndpointRecord {
    EndpointRecord {
        id: id.into(),
        account: account.into(),
        url: url.into(),
        upstream: upstream.to_string(),
        ..Default::default()
    }
}

pub fn cloud(id: &str, account: &str, url: &str, policy: &str) -> EndpointRecord {
    EndpointRecord {
        id: id.into(),
        account: account.into(),
        url: url.into(),
        traffic_policy: policy.into(),
        ..Default::default()
    }
}

pub fn with_policy(mut record: EndpointRecord, policy: &str) -> EndpointRecord {
    record.traffic_policy = policy.into();
    record
}

pub fn pooled(mut record: EndpointRecord) -> EndpointRecord {
    record.pooling_enabled = true;
    record
}

/// A policy that forwards every request to `url`.
pub fn forward_to(url: &str) -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: forward-internal\n        config:\n          url: {url}\n"
    )
}

/// A policy that answers every request with `body`.
pub fn answer(body: &str) -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: custom-response\n        config:\n          status_code: 200\n          body: {body}\n"
    )
}

// === impl Backend ===

/// A request as the backend received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
    /// Which backend connection carried it.
    pub connection: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Recorded) -> Option<Vec<u8>> + Send + Sync;

/// An HTTP/1.1 server on a thread per connection that records every request and
/// answers with what the handler returns (`None`: never answer).
pub struct Backend {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(handler: impl Fn(&Recorded) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Backend {
            addr,
            connections: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        let (connections, requests, stop) = (
            backend.connections.clone(),
            backend.requests.clone(),
            backend.stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let id = connections.fetch_add(1, Ordering::SeqCst);
                let (handler, requests, stop) = (handler.clone(), requests.clone(), stop.clone());
                thread::spawn(move || serve_backend(stream, id, &*handler, &requests, &stop));
            }
        });
        backend
    }

    /// Answers every request with 200 and `body`.
    pub fn text(body: &'static str) -> Self {
        Self::start(move |_| Some(ok(body)))
    }

    /// Answers with the request body, in the request's framing.
    pub fn echo() -> Self {
        Self::start(|r| Some(echo_response(r)))
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn echo_response(r: &Recorded) -> Vec<u8> {
    let mut out = Vec::new();
    if r.chunked {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        for chunk in r.body.chunks(70_000) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                r.body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&r.body);
    }
    out
}

fn serve_backend(
    stream: TcpStream,
    id: usize,
    handler: &Handler,
    requests: &Mutex<Vec<Recorded>>,
    stop: &AtomicBool,
) {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::SeqCst) {
        let Some(head) = read_head(&mut reader) else {
            return;
        };
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut recorded = Recorded {
            method,
            target,
            headers,
            body: Vec::new(),
            chunked: false,
            connection: id,
        };
        if recorded
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            recorded.chunked = true;
            let Some(body) = read_chunked(&mut reader) else {
                return;
            };
            recorded.body = body;
        } else if let Some(n) = recorded.header("content-length") {
            let mut body = vec![0; n.parse().unwrap()];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            recorded.body = body;
        }
        requests.lock().unwrap().push(recorded.clone());
        match handler(&recorded) {
            Some(response) => {
                if writer.write_all(&response).is_err() {
                    return;
                }
            }
            None => {
                // Never answer; hold the connection until the peer goes away.
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
                return;
            }
        }
        if recorded.header("connection") == Some("close") {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}
