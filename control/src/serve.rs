//! `innergate serve`: the control process — store, core, admin socket and API.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::{self, CoreConfig, CoreHandle};
use crate::link::DataPlaneLink;
use crate::store::RedbStore;

/// Settings of a control process.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where the API listens (port 0: any).
    pub api: SocketAddr,
    /// The data directory (store, admin socket).
    pub data: PathBuf,
    /// The data plane's control socket.
    pub dataplane_socket: Option<PathBuf>,
    /// How long an endpoint an agent holds lives without renewal.
    pub lease_ttl: Duration,
    /// The data plane's tunnel listener as agents reach it (`host:port`).
    pub tunnel_url: Option<String>,
}

/// Opens the store and starts the core and the admin socket.
pub fn start_core(opts: &ServeOptions) -> Result<CoreHandle, String> {
    let store = RedbStore::open(&opts.data).map_err(|e| {
        format!(
            "{e} (data directory {}; is another innergate using it?)",
            opts.data.display()
        )
    })?;
    let core = core::spawn(
        Box::new(store),
        DataPlaneLink::new(opts.dataplane_socket.clone()),
        CoreConfig {
            lease_ttl: opts.lease_ttl,
            tunnel_url: opts.tunnel_url.clone(),
        },
    )
    .map_err(|e| e.to_string())?;
    if let Some(socket) = &opts.dataplane_socket {
        crate::tunnel::spawn(socket.clone(), core.clone())
            .map_err(|e| format!("tunnel calls: {e}"))?;
    }
    crate::admin::spawn(&opts.data, core.clone()).map_err(|e| format!("admin socket: {e}"))?;
    Ok(core)
}

/// Serves the API until `shutdown` completes. `ready` runs once the API listens.
pub async fn run(
    opts: ServeOptions,
    ready: impl FnOnce(SocketAddr, CoreHandle),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let core = start_core(&opts)?;
    let listener = tokio::net::TcpListener::bind(opts.api)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.api))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    log::info!("API listening on http://{addr}");
    ready(addr, core.clone());
    axum::serve(listener, crate::api::router(core))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(crate::admin::socket_path(&opts.data));
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
