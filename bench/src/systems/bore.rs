//! bore, the second tunnel reference: `bore server` and one `bore local` per
//! forwarded port (bore forwards one port per client), in front of the backend's HTTP
//! server and of the sink. Plain tcp, a connection from client to server per visitor
//! connection. Its control port is fixed (7835).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use super::Context;
use crate::host::{free_port, pinned_command, CpuTime, Process};

/// bore's control port, which it does not let one choose.
pub const CONTROL_PORT: u16 = 7835;

/// A running bore server and its two clients.
#[derive(Debug)]
pub struct Bore {
    /// The clients, for the HTTP server and for the sink, stopped first.
    pub locals: Vec<Process>,
    /// The server.
    pub server: Process,
    /// The port in front of the backend's HTTP server.
    pub http: SocketAddr,
    /// The port in front of the sink.
    pub bulk: SocketAddr,
}

/// Starts `bore server` on 127.0.0.1 and a `bore local` for the HTTP server and for
/// the sink, all on the proxy CPUs.
pub fn start(cx: &Context, binary: &Path) -> Result<Bore> {
    let dir = cx.dir.join("bore");
    std::fs::create_dir_all(&dir)?;
    let control = SocketAddr::from(([127, 0, 0, 1], CONTROL_PORT));
    // Said plainly, rather than as a server that exits at once.
    drop(TcpListener::bind(control).with_context(|| {
        format!("bore's fixed control port {CONTROL_PORT} is taken on 127.0.0.1")
    })?);
    let port = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (http, bulk) = (port(free_port()?), port(free_port()?));
    let mut command = bore(cx, binary);
    command
        .arg("server")
        .arg("--min-port")
        .arg(http.port().min(bulk.port()).to_string())
        .arg("--max-port")
        .arg(http.port().max(bulk.port()).to_string())
        .args(["--bind-addr", "127.0.0.1"]);
    let mut server = Process::start("bore server", command, &dir.join("server.log"))?;
    server.wait_for_port(control)?;
    let mut locals = Vec::new();
    for (name, local, remote) in [
        ("http", cx.backend.http, http),
        ("bulk", cx.backend.sink, bulk),
    ] {
        let mut command = bore(cx, binary);
        command
            .arg("local")
            .arg(local.port().to_string())
            .args(["--local-host", "127.0.0.1", "--to", "127.0.0.1", "--port"])
            .arg(remote.port().to_string());
        let mut process = Process::start(
            &format!("bore local ({name})"),
            command,
            &dir.join(format!("local-{name}.log")),
        )?;
        process.wait_for_port(remote)?;
        locals.push(process);
    }
    Ok(Bore {
        locals,
        server,
        http,
        bulk,
    })
}

fn bore(cx: &Context, binary: &Path) -> Command {
    let mut command = pinned_command(binary, cx.cpus);
    // As many runtime threads as the other systems have workers; logging off.
    command
        .env("TOKIO_WORKER_THREADS", cx.workers.to_string())
        .env("RUST_LOG", "warn");
    command
}

/// Every process: the server and both clients.
impl CpuTime for Bore {
    fn cpu_seconds(&self) -> f64 {
        self.server.cpu_seconds() + self.locals.iter().map(Process::cpu_seconds).sum::<f64>()
    }
}
