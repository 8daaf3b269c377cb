//! What a worker's connections share: its table, config, TLS configs, upstream pool,
//! counters and drain signal. A leaf: the handlers import it without importing the
//! accept loops.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::WorkerLog;
use crate::config::Config;
use crate::control::calls::ControlCalls;
use crate::drain::Drain;
use crate::routes::RouteTable;
use crate::stats::WorkerStats;
use crate::tls::certs::TlsServer;
use crate::tunnel::registry::{Directory, DirectoryCopy, Tunnels};
use crate::upstream::{UpstreamPool, UpstreamTls};

/// A worker's handle on a shared table. Workers clone an `Rc` of this per request:
/// a thread-local count, where cloning the `Arc` itself would bounce one atomic
/// counter between every core.
#[derive(Debug)]
pub(crate) struct LocalTable(pub(super) Arc<RouteTable>);

impl std::ops::Deref for LocalTable {
    type Target = RouteTable;

    fn deref(&self) -> &RouteTable {
        &self.0
    }
}

/// A worker's state, owned by its thread.
#[derive(Debug)]
pub(crate) struct Worker {
    /// Which worker this is: its slots in shared counters.
    pub(crate) id: usize,
    pub(crate) config: Arc<Config>,
    /// The TLS server for https ports, when certificates are configured.
    pub(crate) tls: Option<TlsServer>,
    /// TLS client configs for https:// and tls:// upstreams.
    pub(crate) upstream_tls: UpstreamTls,
    pub(super) table: RefCell<Rc<LocalTable>>,
    pub(crate) pool: UpstreamPool,
    pub(super) connections: Cell<usize>,
    pub(super) last_limit_log: Cell<Option<Instant>>,
    /// Counters for /metrics, summed over workers when scraped.
    pub(crate) stats: RefCell<WorkerStats>,
    /// Set when the process shuts down.
    pub(crate) drain: Drain,
    /// Where access log lines go, when enabled.
    pub(crate) access_log: Option<WorkerLog>,
    /// This worker's tunnel sessions and what they carry.
    pub(crate) tunnels: Tunnels,
    /// Which workers' sessions carry which endpoints (shared; control path only).
    pub(crate) directory: Arc<Directory>,
    /// Every authenticated session of the process (shared; control path only).
    pub(crate) session_index: Arc<crate::tunnel::index::SessionIndex>,
    /// Calls to control (Binds).
    pub(crate) calls: Arc<ControlCalls>,
    /// Every worker's inbox, this one's included, for hand-overs.
    pub(super) peers: RefCell<Arc<[flume::Sender<super::msg::WorkerMsg>]>>,
}

impl Worker {
    /// Sends `msg` to worker `id`; whether it could.
    pub(crate) fn send_to_worker(&self, id: usize, msg: super::msg::WorkerMsg) -> bool {
        let peers = self.peers.borrow().clone();
        peers.get(id).is_some_and(|p| p.send(msg).is_ok())
    }

    /// Gives every worker (this one too) a new copy of the tunnel directory.
    pub(crate) fn publish_directory(&self, copy: Arc<DirectoryCopy>) {
        let peers = self.peers.borrow().clone();
        if peers.is_empty() {
            self.tunnels.set_directory(copy);
            return;
        }
        for p in peers.iter() {
            let _ = p.send(super::msg::WorkerMsg::Directory(copy.clone()));
        }
    }

    /// Whether one more connection fits under the limit (it is refused otherwise).
    pub(crate) fn admit_connection(&self) -> bool {
        if self.connections.get() >= self.config.max_connections_per_worker {
            super::accept::log_connection_limit(self);
            return false;
        }
        self.stats.borrow_mut().connections_total += 1;
        true
    }

    /// Counts a connection for as long as the guard lives.
    pub(crate) fn count_connection(self: &Rc<Self>) -> ConnectionCount {
        self.connections.set(self.connections.get() + 1);
        ConnectionCount(self.clone())
    }

    /// The current table. A request keeps the table it started with.
    pub(crate) fn table(&self) -> Rc<LocalTable> {
        self.table.borrow().clone()
    }
}

/// Counts a connection for as long as it is served.
#[derive(Debug)]
pub(crate) struct ConnectionCount(Rc<Worker>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}
