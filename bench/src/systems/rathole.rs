//! rathole, the tunnel reference: its server and its client, two processes, with one
//! tcp service in front of the backend's HTTP server and one in front of the sink,
//! over its plain tcp transport (its default) or its TLS transport (native-tls, that
//! is OpenSSL). rathole opens a data channel (a connection from client to server) per
//! visitor connection; it sets TCP_NODELAY on its channels (its default), not on the
//! visitors' connections nor on those to the service, and has no setting for them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::Context;
use crate::certs::TunnelCerts;
use crate::host::{free_port, pinned_command, CpuTime, Process};

/// The transport between rathole's client and server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain tcp: the bytes cross as they are.
    Tcp,
    /// TLS, as innergate's tunnel sessions are.
    Tls,
}

/// A running rathole pair.
#[derive(Debug)]
pub struct Rathole {
    /// The client (the agent's side), stopped first.
    pub client: Process,
    /// The server (the gateway's side).
    pub server: Process,
    /// The service in front of the backend's HTTP server.
    pub http: SocketAddr,
    /// The service in front of the sink.
    pub bulk: SocketAddr,
}

/// Starts a rathole server and client on the proxy CPUs, their configurations in
/// `cx.dir`; with [`Transport::Tls`] the server presents `certs` (as PKCS#12, made
/// with the `openssl` command) and the client trusts their CA.
pub fn start(
    cx: &Context,
    binary: &Path,
    transport: Transport,
    certs: &TunnelCerts,
) -> Result<Rathole> {
    let name = match transport {
        Transport::Tcp => "rathole",
        Transport::Tls => "rathole-tls",
    };
    let dir = cx.dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let port = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (control, http, bulk) = (port(free_port()?), port(free_port()?), port(free_port()?));
    let (server_transport, client_transport) = match transport {
        Transport::Tcp => (
            "type = \"tcp\"\n".to_string(),
            "type = \"tcp\"\n".to_string(),
        ),
        Transport::Tls => {
            let pkcs12 = dir.join("identity.p12");
            pkcs12_of(certs, &pkcs12)?;
            (
                format!(
                    "type = \"tls\"\n[server.transport.tls]\npkcs12 = \"{}\"\npkcs12_password = \"{PKCS12_PASSWORD}\"\n",
                    pkcs12.display()
                ),
                format!(
                    "type = \"tls\"\n[client.transport.tls]\ntrusted_root = \"{}\"\nhostname = \"localhost\"\n",
                    certs.ca.display()
                ),
            )
        }
    };
    let b = cx.backend;
    let server_config = dir.join("server.toml");
    std::fs::write(
        &server_config,
        format!(
            r#"# Written by innergate-bench.
[server]
bind_addr = "{control}"

[server.transport]
{server_transport}
[server.services.http]
token = "{TOKEN}"
bind_addr = "{http}"

[server.services.bulk]
token = "{TOKEN}"
bind_addr = "{bulk}"
"#
        ),
    )?;
    let client_config = dir.join("client.toml");
    std::fs::write(
        &client_config,
        format!(
            r#"# Written by innergate-bench.
[client]
remote_addr = "{control}"

[client.transport]
{client_transport}
[client.services.http]
token = "{TOKEN}"
local_addr = "{backend}"

[client.services.bulk]
token = "{TOKEN}"
local_addr = "{sink}"
"#,
            backend = b.http,
            sink = b.sink,
        ),
    )?;
    let mut server = Process::start(
        &format!("{name} server"),
        command(cx, binary, "--server", &server_config),
        &dir.join("server.log"),
    )?;
    server.wait_for_port(control)?;
    let client = Process::start(
        &format!("{name} client"),
        command(cx, binary, "--client", &client_config),
        &dir.join("client.log"),
    )?;
    // The server binds a service's port once the client has registered it.
    for addr in [http, bulk] {
        server.wait_for_port(addr)?;
    }
    Ok(Rathole {
        client,
        server,
        http,
        bulk,
    })
}

/// The services' token (rathole refuses a client without it).
const TOKEN: &str = "innergate-bench";

/// The PKCS#12 archive's password (rathole wants one).
const PKCS12_PASSWORD: &str = "innergate-bench";

fn command(cx: &Context, binary: &Path, role: &str, config: &Path) -> Command {
    let mut command = pinned_command(binary, cx.cpus);
    command
        .arg(role)
        .arg(config)
        // As many runtime threads as the other systems have workers; logging off.
        .env("TOKIO_WORKER_THREADS", cx.workers.to_string())
        .env("RUST_LOG", "warn");
    command
}

/// Writes the server certificate, its key and the CA into one PKCS#12 archive.
fn pkcs12_of(certs: &TunnelCerts, out: &Path) -> Result<()> {
    let status = Command::new("openssl")
        .args(["pkcs12", "-export", "-out"])
        .arg(out)
        .arg("-inkey")
        .arg(&certs.key)
        .arg("-in")
        .arg(&certs.cert)
        .arg("-certfile")
        .arg(&certs.ca)
        .arg("-passout")
        .arg(format!("pass:{PKCS12_PASSWORD}"))
        .status()
        .context("run openssl pkcs12 (rathole's TLS transport wants PKCS#12)")?;
    if !status.success() {
        bail!("openssl pkcs12 -export failed ({status})");
    }
    Ok(())
}

/// Both processes: a tunnel's cost is its server's and its client's.
impl CpuTime for Rathole {
    fn cpu_seconds(&self) -> f64 {
        self.server.cpu_seconds() + self.client.cpu_seconds()
    }
}
