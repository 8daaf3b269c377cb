//! innergate as a whole gateway, as an operator runs it for agents: the data plane
//! with a tunnel listener, control (`innergate serve`, which validates every Bind and
//! pushes the tables), one account, and agents (`innergate http|tcp`) that put their
//! endpoints in front of a service, either over a tunnel session they dial out or
//! with `--direct` (the data plane dials the service itself).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::innergate::DataPlane;
use super::Context;
use crate::certs::TunnelCerts;
use crate::host::{pinned_command, CpuSet, CpuTime, Process};

/// How an agent's endpoint reaches its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The agent dials the tunnel listener and relays each stream to the service,
    /// with a session on every data plane worker.
    Tunnel,
    /// As `Tunnel` with one session (`--sessions 1`), as the hosted service's SDKs
    /// connect: requests that other workers accept are handed over to its worker.
    SingleSession,
    /// The agent registers the service's address (`--direct`); the data plane dials it.
    Direct,
}

/// A running gateway. Fields drop in order: the agents first (each takes its
/// endpoint offline), then control, then the data plane.
#[derive(Debug)]
pub struct Gateway {
    /// The agents, in the order started.
    pub agents: Vec<Process>,
    /// Control.
    pub control: Process,
    /// The data plane.
    pub dataplane: DataPlane,
    /// `innergate`, for control and the agents.
    binary: PathBuf,
    /// Where logs and control's store go.
    dir: PathBuf,
    /// The API's base URL.
    api: String,
    /// The account's API key, which agents also take as their authtoken.
    key: String,
    /// The tunnel listener, as agents dial it.
    tunnel: String,
    /// The CA agents trust for the tunnel listener.
    ca: PathBuf,
    /// Where control and the agents run (the data plane's CPUs).
    cpus: Option<CpuSet>,
}

impl Gateway {
    /// Starts the data plane (its usual listeners, a tunnel listener on 127.0.0.1
    /// with `certs`, and `extra` flags), control driving it, and an account.
    pub fn start(
        cx: &Context,
        dataplane: &Path,
        binary: &Path,
        certs: &TunnelCerts,
        extra: &[&str],
    ) -> Result<Gateway> {
        let dir = cx
            .dir
            .join(format!("gateway-{}", crate::host::free_port()?));
        std::fs::create_dir_all(&dir)?;
        let mut args: Vec<&str> = extra.to_vec();
        let (cert, key) = (path_str(&certs.cert)?, path_str(&certs.key)?);
        args.extend([
            "--tunnel",
            "127.0.0.1:0",
            "--tunnel-cert",
            cert,
            "--tunnel-key",
            key,
        ]);
        let mut dataplane = DataPlane::start(cx, dataplane, &args)?;
        let tunnel = dataplane.refresh()?.tunnel_addr.clone();
        if tunnel.is_empty() {
            bail!("the data plane reports no tunnel listener");
        }
        let data = dir.join("control");
        let mut command = pinned_command(binary, cx.cpus);
        command
            .args(["serve", "--api", "127.0.0.1:0", "--data"])
            .arg(&data)
            .arg("--dataplane-socket")
            .arg(dataplane.socket())
            .args(["--tunnel-url", &tunnel])
            .env("RUST_LOG", "warn");
        let mut control = Process::start("innergate serve", command, &dir.join("control.log"))?;
        let api = control
            .wait_for_line("its API address", |l| l.starts_with("api: "))?
            .trim_start_matches("api: ")
            .trim()
            .to_string();
        let out = Command::new(binary)
            .args(["accounts", "create", "bench", "--data"])
            .arg(&data)
            .output()
            .context("innergate accounts create")?;
        if !out.status.success() {
            bail!(
                "innergate accounts create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let key = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(Gateway {
            agents: Vec::new(),
            control,
            dataplane,
            binary: binary.to_path_buf(),
            dir,
            api,
            key,
            tunnel,
            ca: certs.ca.clone(),
            cpus: cx.cpus.cloned(),
        })
    }

    /// Starts `innergate PROTO UPSTREAM --url URL` and returns once it has bound its
    /// endpoint.
    pub fn agent(
        &mut self,
        proto: &str,
        upstream: SocketAddr,
        url: &str,
        reach: Reach,
    ) -> Result<()> {
        let mut command = pinned_command(&self.binary, self.cpus.as_ref());
        command
            .arg(proto)
            .arg(upstream.to_string())
            .args(["--url", url]);
        match reach {
            Reach::Tunnel | Reach::SingleSession => {
                command
                    .args(["--server-addr", &self.tunnel, "--authtoken", &self.key])
                    .arg("--tunnel-ca")
                    .arg(&self.ca);
                if reach == Reach::SingleSession {
                    command.args(["--sessions", "1"]);
                }
                &mut command
            }
            Reach::Direct => {
                command.args(["--direct", "--api-url", &self.api, "--api-key", &self.key])
            }
        };
        command
            .env_remove("INNERGATE_API_URL")
            .env_remove("INNERGATE_API_KEY")
            .env("RUST_LOG", "warn");
        let log = self.dir.join(format!("agent-{}.log", self.agents.len()));
        let mut agent = Process::start(&format!("innergate {proto} {url}"), command, &log)?;
        // Its first line names the endpoint it bound: `URL -> UPSTREAM  (id…)`.
        agent.wait_for_line("the endpoint it bound", |l| l.contains(" -> "))?;
        self.agents.push(agent);
        Ok(())
    }

    /// Where URL port `url_port` is served, once a table control pushed opened it.
    pub fn listener(&mut self, url_port: u16) -> Result<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.dataplane.refresh()?;
            if let Ok(addr) = self.dataplane.listener(url_port) {
                return Ok(addr);
            }
            self.dataplane.process.check_running()?;
            if Instant::now() > deadline {
                bail!("the data plane opened no listener for URL port {url_port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every process of the gateway: the data plane, control and every agent.
impl CpuTime for Gateway {
    fn cpu_seconds(&self) -> f64 {
        self.dataplane.process.cpu_seconds()
            + self.control.cpu_seconds()
            + self.agents.iter().map(Process::cpu_seconds).sum::<f64>()
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}
