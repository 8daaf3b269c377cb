//! What the supervisor and other workers send a worker, and what workers share about
//! tunnels. A leaf of the worker module: handlers and the worker's context import it
//! without importing the message loop.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::control::calls::ControlCalls;
use crate::routes::RouteTable;
use crate::stats::WorkerStats;
use innergate_table::tunnel_sessions::SessionCommand;

use crate::tunnel::channel::Handover;
use crate::tunnel::index::SessionIndex;
use crate::tunnel::online::DirectoryCopy;
use crate::tunnel::registry::Directory;

/// A message from the supervisor to a worker.
#[derive(Debug)]
pub(crate) enum WorkerMsg {
    /// Get ready to serve `table`, adopting these new listeners (not yet accepting).
    Prepare {
        table: Arc<RouteTable>,
        listeners: Vec<(u16, TcpListener)>,
        reply: flume::Sender<Result<(), String>>,
    },
    /// Serve the prepared table.
    Commit,
    /// Drop the prepared table and listeners.
    Abort,
    /// Send a copy of this worker's counters.
    Snapshot(flume::Sender<WorkerStats>),
    /// Take what the listeners have queued, close them, and answer once they are
    /// closed: the first half of a drain, done on every worker before any of them
    /// tells a client to go elsewhere (a client told so on one worker must not land
    /// in another worker's queue that is about to close).
    StopAccepting(flume::Sender<()>),
    /// Let connections finish, answer whether all did in time.
    Drain(flume::Sender<bool>, Duration),
    /// Every worker's inbox (sent once, after all started).
    Peers(Arc<[flume::Sender<WorkerMsg>]>),
    /// Accept agent sessions on this listener.
    TunnelListener(TcpListener, Arc<rustls::ServerConfig>),
    /// A new copy of which workers' sessions carry which endpoints.
    Directory(Arc<DirectoryCopy>),
    /// Open a stream on one of this worker's sessions for another worker.
    Handover(Handover),
    /// Send a command to the agent of this worker's session number `session`, and
    /// answer with what it said.
    SessionCommand {
        session: u64,
        command: SessionCommand,
        reply: flume::Sender<Result<(), String>>,
    },
}

/// What every worker shares about tunnels.
#[derive(Clone, Debug)]
pub(crate) struct TunnelShared {
    pub(crate) directory: Arc<Directory>,
    pub(crate) index: Arc<SessionIndex>,
    pub(crate) calls: Arc<ControlCalls>,
}
