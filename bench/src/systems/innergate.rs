//! innergate's data plane, started alone on the proxy CPUs; the bench pushes its
//! endpoint tables over the control socket as control would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use innergate_table::link::ControlClient;
use innergate_table::wire::{Ack, TableMessage};
use innergate_table::EndpointRecord;

use super::{hosts, Context, TCP_URL_PORT, TLS_URL_PORT};
use crate::host::{pinned_command, Process};

/// A running data plane.
#[derive(Debug)]
pub struct DataPlane {
    /// The process.
    pub process: Process,
    socket: PathBuf,
    version: u64,
    ack: Ack,
}

/// The data plane binary beside the bench's own, built first when cargo is at hand
/// (so that `cargo run -p innergate-bench` measures the current source).
pub fn binary() -> Result<PathBuf> {
    built("innergate-dataplane")
}

/// Control's binary (`innergate`: serve, accounts, agents), found and built as
/// [`binary`] is.
pub fn control_binary() -> Result<PathBuf> {
    built("innergate")
}

/// The binary of workspace package `package` (named as the package) beside the
/// bench's own, built first when cargo is at hand.
fn built(package: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the bench binary has no directory")?;
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if workspace.join("Cargo.toml").exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .current_dir(&workspace)
            .args(["build", "--quiet", "-p", package]);
        if profile != "debug" {
            build.args(["--profile", profile]);
        }
        // A failed build (no cargo here) falls back to the binary already built.
        let _ = build.status();
    }
    let binary = dir.join(package);
    if !binary.exists() {
        bail!(
            "{} is missing: cargo build --release -p {package}",
            binary.display()
        );
    }
    Ok(binary)
}

impl DataPlane {
    /// Starts the data plane with public listeners for URL ports 80, 443 and the tcp
    /// and tls ports, and the bench certificate as its default.
    pub fn start(cx: &Context, binary: &Path, extra: &[&str]) -> Result<DataPlane> {
        let dir = cx
            .dir
            .join(format!("innergate-{}", crate::host::free_port()?));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("control.sock");
        let mut command = pinned_command(binary, cx.cpus);
        command
            .arg("--workers")
            .arg(cx.workers.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--port-map",
                "80=0",
                "--port-map",
                "443=0",
            ])
            .arg("--port-map")
            .arg(format!("{TCP_URL_PORT}=0"))
            .arg("--port-map")
            .arg(format!("{TLS_URL_PORT}=0"))
            .arg("--control-socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--tls-cert")
            .arg(&cx.certs.cert)
            .arg("--tls-key")
            .arg(&cx.certs.key)
            .args(extra)
            .env("RUST_LOG", "warn");
        let mut process = Process::start("innergate-dataplane", command, &dir.join("log"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while ControlClient::connect(&socket, Duration::from_secs(5)).is_err() {
            process.check_running()?;
            if Instant::now() > deadline {
                bail!("the data plane did not open its control socket");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(DataPlane {
            process,
            socket,
            version: 0,
            ack: Ack::default(),
        })
    }

    /// Pushes a table; returns how long the data plane took to acknowledge it.
    pub fn push(&mut self, endpoints: Vec<EndpointRecord>) -> Result<Duration> {
        self.version += 1;
        let mut link = ControlClient::connect(&self.socket, Duration::from_secs(60))?;
        let start = Instant::now();
        self.ack = link.apply(TableMessage {
            authtokens: Vec::new(),
            version: self.version,
            endpoints,
        })?;
        Ok(start.elapsed())
    }

    /// The control socket, for a control process to drive this data plane.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Asks the data plane what it serves now (the table control pushed, its
    /// listeners, its tunnel listener).
    pub fn refresh(&mut self) -> Result<&Ack> {
        let mut link = ControlClient::connect(&self.socket, Duration::from_secs(5))?;
        self.ack = link.status()?;
        Ok(&self.ack)
    }

    /// Where URL port `url_port` is served.
    pub fn listener(&self, url_port: u16) -> Result<SocketAddr> {
        let l = self
            .ack
            .listeners
            .iter()
            .find(|l| l.url_port == url_port)
            .with_context(|| format!("no listener for URL port {url_port}"))?;
        Ok(l.local_addr.parse()?)
    }
}

// === tables ===

const ACCOUNT: &str = "acc_bench";

/// An agent endpoint of the bench account.
pub fn agent(id: &str, url: &str, upstream: impl ToString) -> EndpointRecord {
    EndpointRecord {
        id: id.into(),
        account: ACCOUNT.into(),
        url: url.into(),
        upstream: upstream.to_string(),
        ..Default::default()
    }
}

/// A cloud endpoint that forwards every request to `target`.
pub fn forwarder(id: &str, url: &str, target: &str) -> EndpointRecord {
    EndpointRecord {
        id: id.into(),
        account: ACCOUNT.into(),
        url: url.into(),
        traffic_policy: format!(
            "on_http_request: [{{actions: [{{type: forward-internal, config: {{url: '{target}'}}}}]}}]"
        ),
        ..Default::default()
    }
}

/// The endpoints every scenario uses: the agent (http and https), the one-hop and
/// three-hop forward-internal chains, the policy endpoint, and the tcp and tls
/// endpoints in front of the sinks.
pub fn standard_table(cx: &Context, policy: &str) -> Vec<EndpointRecord> {
    let b = cx.backend;
    let upstream = format!("http://{}", b.http);
    let mut policy_agent = agent("ep_policy", &format!("http://{}", hosts::POLICY), &upstream);
    policy_agent.traffic_policy = policy.to_string();
    vec![
        agent("ep_agent", &format!("http://{}", hosts::AGENT), &upstream),
        agent(
            "ep_agent_tls",
            &format!("https://{}", hosts::AGENT),
            &upstream,
        ),
        forwarder(
            "ep_fwd",
            &format!("http://{}", hosts::FORWARD),
            "https://svc.internal",
        ),
        agent("ep_svc", "https://svc.internal", &upstream),
        forwarder(
            "ep_chain",
            &format!("http://{}", hosts::CHAIN),
            "https://a.internal",
        ),
        forwarder("ep_a", "https://a.internal", "https://b.internal"),
        forwarder("ep_b", "https://b.internal", "https://c.internal"),
        agent("ep_c", "https://c.internal", &upstream),
        policy_agent,
        agent(
            "ep_tcp",
            &format!("tcp://{}:{TCP_URL_PORT}", hosts::BULK),
            format!("tcp://{}", b.sink),
        ),
        agent(
            "ep_tls",
            &format!("tls://{}:{TLS_URL_PORT}", hosts::BULK),
            format!("tcp://{}", b.tls_sink),
        ),
    ]
}
