//! Fixtures: control and data plane processes, accounts, a tiny HTTP getter.
//!
//! The process guard, the waits, the HTTP client and the TLS client are shared with
//! the data plane's suite (`innergate-test-support`) and re-exported here; the
//! processes and accounts are this suite's own.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use innergate::client::ApiClient;
use innergate::endpoint::CreateEndpoint;
use innergate_table::link::ControlClient;

pub use innergate_test_support::*;

pub fn innergate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_innergate"))
}

/// The data plane binary next to `innergate`, built on demand when this package's
/// tests run alone.
pub fn dataplane_bin() -> PathBuf {
    let path = innergate_bin().with_file_name("innergate-dataplane");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "innergate-dataplane"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build innergate-dataplane");
    }
    path
}

// === impl DataPlane ===

pub struct DataPlane {
    child: KillOnDrop,
    pub socket: PathBuf,
    pub state: PathBuf,
    extra: Vec<String>,
}

impl DataPlane {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let mut dp = DataPlane {
            child: KillOnDrop(None),
            socket: dir.join("dataplane.sock"),
            state: dir.join("dataplane-state"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        dp.spawn();
        dp
    }

    /// Where URL port `url_port` is served, once a table opened it.
    pub fn listener(&self, url_port: u16) -> SocketAddr {
        eventually_some(&format!("a listener for port {url_port}"), || {
            let mut c = ControlClient::connect(&self.socket, TIMEOUT).ok()?;
            let ack = c.status().ok()?;
            let listener = ack.listeners.iter().find(|l| l.url_port == url_port)?;
            Some(listener.local_addr.parse().unwrap())
        })
    }

    pub fn spawn(&mut self) {
        let child = Command::new(dataplane_bin())
            .args([
                "--workers",
                "2",
                "--bind",
                "127.0.0.1",
                "--port-map",
                "80=0",
            ])
            .arg("--control-socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        self.child = KillOnDrop::new(child);
        let socket = &self.socket;
        self.child
            .eventually("the data plane's control socket", || {
                ControlClient::connect(socket, TIMEOUT).is_ok()
            });
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts a second data plane on the same socket and state with `--takeover` (an
    /// upgrade) and the flags in `replace` changed, and returns once it owns the
    /// socket.
    pub fn takeover(&self, replace: &[(&str, &str)]) -> DataPlane {
        let inode = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).map(|m| m.ino()).ok()
        };
        let before = inode(&self.socket);
        let mut new = DataPlane {
            child: KillOnDrop(None),
            socket: self.socket.clone(),
            state: self.state.clone(),
            extra: self.extra.clone(),
        };
        for (flag, value) in replace {
            new.set_extra_arg(flag, value);
        }
        new.extra.push("--takeover".into());
        new.spawn();
        let socket = new.socket.clone();
        new.child
            .eventually("the new data plane to own the socket", || {
                inode(&socket) != before && ControlClient::connect(&socket, TIMEOUT).is_ok()
            });
        new
    }

    /// Sends SIGTERM (a drain).
    pub fn terminate(&self) {
        self.child.signal(libc::SIGTERM);
    }

    /// Replaces the value of `flag` among the extra arguments (for the next spawn).
    pub fn set_extra_arg(&mut self, flag: &str, value: &str) {
        match self.extra.iter().position(|a| a == flag) {
            Some(i) => self.extra[i + 1] = value.to_string(),
            None => self.extra.extend([flag.to_string(), value.to_string()]),
        }
    }

    pub fn version(&self) -> u64 {
        ControlClient::connect(&self.socket, TIMEOUT)
            .and_then(|mut c| c.status().map_err(std::io::Error::other))
            .map_or(0, |a| a.version)
    }

    /// Where URL port 80 is served, once a table opened it.
    pub fn http_addr(&self) -> SocketAddr {
        self.listener(80)
    }
}

// === impl Control ===

pub struct Control {
    child: KillOnDrop,
    pub data: PathBuf,
    pub api: String,
    dataplane_socket: Option<PathBuf>,
    lease_ttl: String,
    extra: Vec<String>,
}

impl Control {
    pub fn start(data: &Path, dataplane_socket: Option<&Path>) -> Self {
        Self::start_with_lease(data, dataplane_socket, "3s")
    }

    /// Control whose agent leases last `lease_ttl` (`1s`, `60s`...).
    pub fn start_with_lease(data: &Path, dataplane_socket: Option<&Path>, lease_ttl: &str) -> Self {
        Self::start_with_args(data, dataplane_socket, lease_ttl, &[])
    }

    /// Control with more `serve` arguments.
    pub fn start_with_args(
        data: &Path,
        dataplane_socket: Option<&Path>,
        lease_ttl: &str,
        extra: &[&str],
    ) -> Self {
        let mut control = Control {
            child: KillOnDrop(None),
            data: data.to_path_buf(),
            api: String::new(),
            dataplane_socket: dataplane_socket.map(Path::to_path_buf),
            lease_ttl: lease_ttl.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        control.spawn();
        control
    }

    pub fn spawn(&mut self) {
        let mut command = Command::new(innergate_bin());
        command
            .args(["serve", "--api", "127.0.0.1:0", "--lease-ttl"])
            .arg(&self.lease_ttl)
            .arg("--data")
            .arg(&self.data)
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        if let Some(socket) = &self.dataplane_socket {
            command.arg("--dataplane-socket").arg(socket);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.api = line
            .trim()
            .strip_prefix("api: ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        self.child = KillOnDrop::new(child);
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Creates an account through the CLI (the running control's admin socket).
    pub fn account(&self, name: &str) -> String {
        let out = run(&[
            "accounts",
            "create",
            name,
            "--data",
            self.data.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            key.lines().count(),
            1,
            "stdout holds the key alone: {key:?}"
        );
        key.trim().to_string()
    }

    pub fn client(&self, key: &str) -> ApiClient {
        ApiClient::new(&self.api, key)
    }

    /// The API's address.
    pub fn addr(&self) -> SocketAddr {
        self.api.trim_start_matches("http://").parse().unwrap()
    }

    /// The value of an unlabelled metric of `GET /metrics`, e.g.
    /// `innergate_control_leases_active`.
    pub fn metric(&self, name: &str) -> Option<u64> {
        get(self.addr(), "control", "/metrics")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// Runs the `innergate` CLI to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(innergate_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("INNERGATE_API_KEY")
        .env_remove("INNERGATE_API_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A GET with a Host header; returns (status, body), or (0, "") when the connection
/// ends without a response.
pub fn http_get(addr: SocketAddr, host: &str) -> (u16, String) {
    let mut conn = HttpConn::connect(addr);
    conn.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
    conn.try_read_response()
        .map_or((0, String::new()), |r| (r.status, r.text()))
}

/// A backend answering every request with `body`, on a thread.
pub fn backend(body: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

pub const HELLO: &str = "on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: Hello world!}\n";

pub fn forward(url: &str) -> String {
    format!("on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {{url: {url}}}\n")
}

/// A cloud endpoint with `policy`.
pub fn cloud(url: &str, policy: &str) -> CreateEndpoint {
    CreateEndpoint {
        url: url.into(),
        traffic_policy: Some(policy.into()),
        ..Default::default()
    }
}
