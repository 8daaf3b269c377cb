//! Applies tables to every worker: decode and check once, bind new listeners, prepare
//! every worker, persist, then commit — or abort everywhere and keep the old table.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use innergate_table::wire::{Ack, ListenerInfo, Message, TableMessage};
use innergate_table::EndpointTable;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use innergate_table::Scheme;

use super::state::StateFile;
use crate::ratelimit::RateRegistry;
use crate::routes::RouteTable;
use crate::stats::{StatsSlots, WorkerStats};
use crate::tls::CertStore;
use crate::worker::{WorkerHandle, WorkerMsg};

/// How long a worker may take to prepare a table.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10);

/// Owns the workers' table lifecycle. Lives behind a mutex on the control side; never
/// touched by the request path.
#[derive(Debug)]
pub(crate) struct Supervisor {
    config: Arc<Config>,
    workers: Vec<WorkerHandle>,
    /// URL port → the local address its listeners are bound to.
    listeners: BTreeMap<u16, SocketAddr>,
    version: u64,
    state: Option<StateFile>,
    /// rate-limit counters, kept across tables.
    limits: RateRegistry,
    /// The configured certificates (https endpoints and terminate-tls need them).
    certs: Arc<CertStore>,
    /// Counter slots of endpoints, kept across tables.
    slots: StatsSlots,
    /// When the current table was applied; `None` until one is.
    applied_at: Option<std::time::Instant>,
    /// Where the tunnel listener is bound, if there is one.
    tunnel_addr: Option<SocketAddr>,
}

impl Supervisor {
    pub(crate) fn new(
        config: Arc<Config>,
        workers: Vec<WorkerHandle>,
        state: Option<StateFile>,
        certs: Arc<CertStore>,
        tunnel_addr: Option<SocketAddr>,
    ) -> Self {
        Supervisor {
            config,
            workers,
            listeners: BTreeMap::new(),
            version: 0,
            state,
            limits: RateRegistry::default(),
            certs,
            slots: StatsSlots::default(),
            applied_at: None,
            tunnel_addr,
        }
    }

    /// Sends `msg` to worker `id`; whether it could.
    pub(crate) fn send_to_worker(&self, id: usize, msg: WorkerMsg) -> bool {
        self.workers
            .get(id)
            .is_some_and(|w| w.inbox.send(msg).is_ok())
    }

    /// What is served now.
    pub(crate) fn status(&self) -> Ack {
        Ack {
            version: self.version,
            listeners: self
                .listeners
                .iter()
                .map(|(&url_port, addr)| ListenerInfo {
                    url_port,
                    local_addr: addr.to_string(),
                })
                .collect(),
            tunnel_addr: self.tunnel_addr.map(|a| a.to_string()).unwrap_or_default(),
        }
    }

    /// Applies a table, or refuses it with a reason and keeps the current one.
    /// `persist` is false when the table comes from the state file itself.
    pub(crate) fn apply(&mut self, msg: &TableMessage, persist: bool) -> Result<Ack, String> {
        if self.applied_at.is_some() && msg.version < self.version {
            return Err(format!(
                "stale table version {} (serving version {})",
                msg.version, self.version
            ));
        }
        let table = EndpointTable::from_records(msg.version, &msg.endpoints)
            .map_err(|e| format!("endpoint {}: {e}", e.endpoint_id()))?;
        let (mut routes, staged) = RouteTable::compile(
            &table,
            &self.limits,
            self.workers.len(),
            &self.certs,
            &self.slots,
        )
        .map_err(|e| e.to_string())?;
        if self.certs.is_empty() && routes.listen_ports.values().any(|s| *s == Scheme::Https) {
            return Err(
                "https endpoints need a certificate: start the data plane with \
                        --tls-cert/--tls-key or --tls-cert-dir"
                    .into(),
            );
        }
        routes.set_authtokens(&msg.authtokens);
        let routes = Arc::new(routes);

        let mut new_listeners: BTreeMap<u16, (SocketAddr, Vec<TcpListener>)> = BTreeMap::new();
        for &port in routes.listen_ports.keys() {
            if self.listeners.contains_key(&port) {
                continue;
            }
            let local_port = self.config.port_map.get(&port).copied().unwrap_or(port);
            let addr = SocketAddr::new(self.config.bind, local_port);
            let bound = bind_reuseport(addr, self.workers.len())
                .map_err(|e| format!("cannot listen for port {port} on {addr}: {e}"))?;
            new_listeners.insert(port, bound);
        }

        // Phase one: every worker adopts its listeners and holds the table.
        let (reply_tx, reply_rx) = flume::unbounded();
        for worker in &self.workers {
            let listeners = new_listeners
                .iter_mut()
                .map(|(&port, (_, socks))| (port, socks.pop().expect("one socket per worker")))
                .collect();
            let prepare = WorkerMsg::Prepare {
                table: routes.clone(),
                listeners,
                reply: reply_tx.clone(),
            };
            if worker.inbox.send(prepare).is_err() {
                self.abort();
                return Err("a worker has stopped".into());
            }
        }
        for _ in 0..self.workers.len() {
            match reply_rx.recv_timeout(PREPARE_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    self.abort();
                    return Err(reason);
                }
                Err(_) => {
                    self.abort();
                    return Err("a worker did not prepare the table in time".into());
                }
            }
        }
        if persist {
            if let Some(state) = &self.state {
                let mut payload = Vec::new();
                Message::ApplyTable(msg.clone()).encode(&mut payload);
                if let Err(e) = state.save(&payload) {
                    self.abort();
                    return Err(format!("cannot save the table to the state directory: {e}"));
                }
            }
        }
        // Phase two: nothing can fail from here on.
        for worker in &self.workers {
            let _ = worker.inbox.send(WorkerMsg::Commit);
        }
        self.limits = staged.limits;
        self.slots.apply(staged.slots);
        self.listeners
            .retain(|port, _| routes.listen_ports.contains_key(port));
        for (port, (addr, _)) in new_listeners {
            self.listeners.insert(port, addr);
        }
        self.version = msg.version;
        self.applied_at = Some(std::time::Instant::now());
        log::info!(
            "applied table version {} ({} endpoints, {} public ports)",
            msg.version,
            msg.endpoints.len(),
            self.listeners.len()
        );
        Ok(self.status())
    }

    /// Asks every worker to drain and waits for all of them, until `deadline`.
    /// `true` when every worker finished in time.
    pub(crate) fn drain(&self, deadline: Duration) -> bool {
        // First every worker stops accepting, then any starts closing connections.
        let (closed_tx, closed_rx) = flume::unbounded();
        let stopping = self
            .workers
            .iter()
            .filter(|w| {
                w.inbox
                    .send(WorkerMsg::StopAccepting(closed_tx.clone()))
                    .is_ok()
            })
            .count();
        for _ in 0..stopping {
            if closed_rx.recv_timeout(PREPARE_TIMEOUT).is_err() {
                log::warn!("a worker did not close its listeners in time; draining anyway");
                break;
            }
        }
        let (reply_tx, reply_rx) = flume::unbounded();
        let asked = self
            .workers
            .iter()
            .filter(|w| {
                w.inbox
                    .send(WorkerMsg::Drain(reply_tx.clone(), deadline))
                    .is_ok()
            })
            .count();
        let until = std::time::Instant::now() + deadline + Duration::from_secs(1);
        (0..asked).all(|_| {
            let left = until.saturating_duration_since(std::time::Instant::now());
            matches!(reply_rx.recv_timeout(left), Ok(true))
        })
    }

    /// Whether a table is being served (for /healthz).
    pub(crate) fn has_table(&self) -> bool {
        self.applied_at.is_some()
    }

    /// Prometheus text: every worker's counters, summed.
    pub(crate) fn metrics(&self) -> String {
        let (reply_tx, reply_rx) = flume::unbounded();
        let asked = self
            .workers
            .iter()
            .filter(|w| w.inbox.send(WorkerMsg::Snapshot(reply_tx.clone())).is_ok())
            .count();
        let mut total = WorkerStats::default();
        for _ in 0..asked {
            match reply_rx.recv_timeout(Duration::from_secs(2)) {
                Ok(stats) => total.add(&stats),
                Err(_) => break,
            }
        }
        let age = self.applied_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
        crate::stats::render(&total, &self.slots, self.version, age)
    }

    fn abort(&self) {
        for worker in &self.workers {
            let _ = worker.inbox.send(WorkerMsg::Abort);
        }
    }

    /// Serves the table saved in the state directory, if there is one.
    pub(crate) fn restore(&mut self) {
        let Some(state) = &self.state else { return };
        let payload = match state.load() {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(e) => {
                log::error!("cannot read the saved table: {e}");
                return;
            }
        };
        match Message::read(&payload) {
            Ok(Message::ApplyTable(table)) => match self.apply(&table, false) {
                Ok(_) => log::info!("serving saved table version {}", table.version),
                Err(e) => log::error!("saved table version {} refused: {e}", table.version),
            },
            Ok(_) | Err(_) => log::error!("the saved table is unreadable; starting empty"),
        }
    }
}

/// Binds `count` listening sockets with SO_REUSEPORT on one address. When the port is
/// 0, the first socket picks it and the others join that port.
pub(crate) fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        let listener: TcpListener = socket.into();
        addr = listener.local_addr()?;
        sockets.push(listener);
    }
    Ok((addr, sockets))
}
