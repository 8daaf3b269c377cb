//! What a worker's connections share: its table, config, TLS configs, upstream pool,
//! counters and drain signal. A leaf: the handlers import it without importing the
//! accept loops.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::WorkerLog;
use crate::config::Config;
use crate::drain::Drain;
use crate::routes::RouteTable;
use crate::stats::WorkerStats;
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
    /// The TLS server config for https ports, when certificates are configured.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
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
}

impl Worker {
    /// The current table. A request keeps the table it started with.
    pub(crate) fn table(&self) -> Rc<LocalTable> {
        self.table.borrow().clone()
    }
}
