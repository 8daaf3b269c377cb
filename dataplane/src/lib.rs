//! `innergate-dataplane`: serves the endpoints of an innergate table.
//!
//! Start reading at [`start`]: it spawns the [`worker`] threads (one monoio runtime
//! each), restores the last table from the state directory, and opens the [`control`]
//! socket, where the supervisor applies new tables in two phases. The folders follow a
//! request: a [`worker`] accepts it, [`tls`] terminates or routes TLS, [`http`] serves
//! its exchanges, routed with the immutable [`routes::RouteTable`] and run through the
//! [`policy`] executor (forward-internal hops happen there, in memory); then an
//! [`upstream`] connection from the worker's pool, or a local answer; byte streams
//! (tcp, tls passthrough, WebSocket) go through [`relay`].

pub mod access_log;
pub mod config;
mod confine;
mod control;
mod drain;
mod error;
mod fast_map;
mod fault;
pub mod http;
pub mod ipintel;
mod policy;
mod ratelimit;
mod relay;
mod routes;
mod stats;
mod tcp;
pub mod tls;
pub mod tunnel;
mod upstream;
mod worker;

use std::io;
use std::sync::{Arc, Mutex};

pub use config::Config;

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A worker runtime could not be built.
    #[error("cannot start worker {worker}: {source}")]
    Worker {
        /// Which worker.
        worker: usize,
        /// The cause.
        source: io::Error,
    },
    /// The state directory is unusable.
    #[error("state directory: {0}")]
    StateDir(io::Error),
    /// The control socket could not be opened.
    #[error("control socket: {0}")]
    ControlSocket(io::Error),
    /// The admin address could not be bound.
    #[error("admin listener: {0}")]
    Admin(io::Error),
    /// The access log could not be opened.
    #[error("access log: {0}")]
    AccessLog(io::Error),
    /// The tunnel listener could not be bound or has no certificate.
    #[error("tunnel listener: {0}")]
    Tunnel(io::Error),
    /// A TLS certificate or key could not be loaded.
    #[error("TLS certificates: {0}")]
    Certificates(#[from] tls::CertError),
}

/// A running data plane. It runs until the process exits.
#[derive(Debug)]
pub struct DataPlane {
    supervisor: Arc<Mutex<control::supervisor::Supervisor>>,
    /// The control socket and the identity of the file we bound there.
    control_socket: Option<(std::path::PathBuf, Option<(u64, u64)>)>,
    /// Dropped last: its writer thread writes what the workers handed over.
    access_log: Option<access_log::AccessLog>,
}

impl DataPlane {
    /// Stops accepting connections, lets requests and streams in flight finish, and
    /// returns once every worker is idle or `deadline` has passed. Idle keep-alive
    /// connections are closed at once.
    pub fn drain(&self, deadline: std::time::Duration) -> bool {
        let supervisor = self.supervisor.lock().unwrap_or_else(|e| e.into_inner());
        supervisor.drain(deadline)
    }

    /// Removes the control socket's file, unless a newer process has put its own
    /// there (an upgrade), which must stay.
    pub fn remove_control_socket(&self) {
        if let Some((path, ours)) = &self.control_socket {
            if ours.is_some() && control::file_id(path) == *ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Reopens the access log (after a rotation moved it).
    pub fn reopen_logs(&self) {
        if let Some(log) = &self.access_log {
            log.reopen();
        }
    }
}

/// Starts workers, restores the saved table and opens the control socket.
pub fn start(config: Config) -> Result<DataPlane, StartError> {
    confine::abort_on_unconfined_panics();
    let config = Arc::new(config);
    let default_pair = config.tls_cert.as_deref().zip(config.tls_key.as_deref());
    let certs = Arc::new(tls::CertStore::load(
        default_pair,
        config.tls_cert_dir.as_deref(),
    )?);
    let tls = (!certs.is_empty()).then(|| certs.server());
    let upstream_tls =
        upstream::UpstreamTls::new(config.upstream_ca.as_deref(), config.upstream_tls_insecure)?;
    let access_log = match &config.access_log {
        Some(path) => Some(access_log::AccessLog::open(path).map_err(StartError::AccessLog)?),
        None => None,
    };
    let shared = worker::TunnelShared {
        directory: Arc::default(),
        index: Arc::default(),
        calls: Arc::default(),
    };
    let workers = (0..config.workers.max(1))
        .map(|id| {
            let log = access_log.as_ref().map(access_log::AccessLog::for_worker);
            let (tls, upstream_tls) = (tls.clone(), upstream_tls.clone());
            worker::spawn(id, config.clone(), tls, upstream_tls, log, shared.clone())
                .map_err(|source| StartError::Worker { worker: id, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let peers: Arc<[flume::Sender<worker::WorkerMsg>]> =
        workers.iter().map(|w| w.inbox.clone()).collect();
    for w in &workers {
        let _ = w.inbox.send(worker::WorkerMsg::Peers(peers.clone()));
    }
    let tunnel_addr = match config.tunnel {
        Some(addr) => {
            let server = tunnel_tls(&config, &certs)?;
            let bound = bind_tunnel(addr, &workers, server).map_err(StartError::Tunnel)?;
            log::info!("tunnel listener at {bound}");
            control::calls::spawn_renewals(shared.calls.clone(), shared.directory.clone());
            Some(bound)
        }
        None => None,
    };
    let state = match &config.state_dir {
        Some(dir) => Some(control::state::StateFile::open(dir).map_err(StartError::StateDir)?),
        None => None,
    };
    let mut supervisor =
        control::supervisor::Supervisor::new(config.clone(), workers, state, certs, tunnel_addr);
    supervisor.restore();
    let supervisor = Arc::new(Mutex::new(supervisor));
    if let Some(addr) = config.admin {
        let listener = std::net::TcpListener::bind(addr).map_err(StartError::Admin)?;
        log::info!(
            "admin endpoints at http://{}",
            listener.local_addr().map_err(StartError::Admin)?
        );
        control::admin::spawn(listener, supervisor.clone()).map_err(StartError::Admin)?;
    }
    let mut control_socket = None;
    if let Some(path) = &config.control_socket {
        let listener = control::bind(path, config.takeover).map_err(StartError::ControlSocket)?;
        control_socket = Some((path.clone(), control::file_id(path)));
        let tunnels = control::Tunnels {
            calls: shared.calls.clone(),
            index: shared.index.clone(),
        };
        control::spawn(listener, supervisor.clone(), tunnels).map_err(StartError::ControlSocket)?;
        log::info!("control socket at {}", path.display());
    }
    Ok(DataPlane {
        supervisor,
        control_socket,
        access_log,
    })
}

/// The tunnel listener's TLS: its own pair, else the https default one.
fn tunnel_tls(
    config: &Config,
    certs: &Arc<tls::CertStore>,
) -> Result<Arc<rustls::ServerConfig>, StartError> {
    match config
        .tunnel_cert
        .as_deref()
        .zip(config.tunnel_key.as_deref())
    {
        Some((cert, key)) => {
            let pair = tls::certs::load_pair(cert, key)?;
            Ok(Arc::new(tls::CertStore::single(pair)).server_config())
        }
        None if !certs.is_empty() => Ok(certs.server_config()),
        None => Err(StartError::Tunnel(io::Error::other(
            "--tunnel needs a certificate: --tunnel-cert/--tunnel-key or --tls-cert/--tls-key",
        ))),
    }
}

/// Binds one SO_REUSEPORT socket per worker on the tunnel address (the first one
/// picks the port when it is 0) and gives each to its worker.
fn bind_tunnel(
    addr: std::net::SocketAddr,
    workers: &[worker::WorkerHandle],
    server: Arc<rustls::ServerConfig>,
) -> io::Result<std::net::SocketAddr> {
    let (addr, listeners) = control::supervisor::bind_reuseport(addr, workers.len())?;
    for (w, listener) in workers.iter().zip(listeners) {
        let _ = w
            .inbox
            .send(worker::WorkerMsg::TunnelListener(listener, server.clone()));
    }
    Ok(addr)
}
