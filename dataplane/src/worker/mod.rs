//! Worker threads: one monoio runtime each, its own SO_REUSEPORT listener per public
//! port, its own upstream pool, its own view of the current table. Tables arrive in
//! two phases (prepare, then commit or abort) over a channel; nothing on the request
//! path locks or touches another worker's memory.

mod accept;
mod context;
mod msg;
mod tunnels;

pub(crate) use context::{LocalTable, Worker};
pub(crate) use msg::{TunnelShared, WorkerMsg};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use crate::access_log::WorkerLog;
use crate::config::{Config, RingTaskRun};
use crate::drain::Drain;
use crate::routes::RouteTable;
use crate::tls::certs::TlsServer;
use crate::upstream::{UpstreamPool, UpstreamTls};

/// The supervisor's side of a worker.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    pub(crate) inbox: flume::Sender<WorkerMsg>,
    _thread: thread::JoinHandle<()>,
}

/// A table a worker has adopted but does not serve yet.
struct Prepared {
    table: Arc<RouteTable>,
    listeners: Vec<(u16, TcpListener)>,
}

/// The runtime of a worker: io_uring or, where that is unavailable, epoll; with timers.
type WorkerRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// A worker's runtime: io_uring with the task-run mode asked for, or epoll where
/// io_uring is unavailable.
fn build_runtime(config: &Config, taskrun: RingTaskRun) -> std::io::Result<WorkerRuntime> {
    let mut ring = io_uring::IoUring::builder();
    match taskrun {
        RingTaskRun::Interrupt => {}
        RingTaskRun::Coop => {
            ring.setup_coop_taskrun();
        }
        RingTaskRun::Defer => {
            // Every submission comes from the worker's own thread.
            ring.setup_single_issuer().setup_defer_taskrun();
        }
    }
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .uring_builder(ring)
        .with_entries(config.ring_entries)
        .enable_timer()
        .build()
}

/// Starts worker `id`; returns once its runtime is built.
pub(crate) fn spawn(
    id: usize,
    config: Arc<Config>,
    tls: Option<TlsServer>,
    upstream_tls: UpstreamTls,
    access_log: Option<WorkerLog>,
    tunnel: TunnelShared,
) -> io::Result<WorkerHandle> {
    let (inbox, messages) = flume::unbounded();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("ig-worker-{id}"))
        .spawn(move || {
            if config.pin_workers {
                let cores = thread::available_parallelism().map_or(1, |n| n.get());
                if let Err(e) = monoio::utils::bind_to_cpu_set([id % cores]) {
                    log::warn!("worker {id}: cannot pin to cpu {}: {e:?}", id % cores);
                }
            }
            let uring = monoio::utils::detect_uring();
            let runtime = build_runtime(&config, config.ring_taskrun).or_else(|e| {
                if config.ring_taskrun == RingTaskRun::Interrupt {
                    return Err(e);
                }
                // An older kernel refuses the setup flags: keep io_uring without them.
                if id == 0 {
                    log::warn!(
                        "io_uring refused {:?} task running ({e}); using the default",
                        config.ring_taskrun
                    );
                }
                build_runtime(&config, RingTaskRun::Interrupt)
            });
            let mut runtime = match runtime {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            if id == 0 {
                if uring {
                    log::info!("workers use the io_uring driver");
                } else {
                    log::warn!(
                        "io_uring is unavailable here; workers fall back to the epoll driver"
                    );
                }
            }
            let _ = ready_tx.send(Ok(()));
            runtime.block_on(run(
                id,
                config,
                tls,
                upstream_tls,
                access_log,
                tunnel,
                messages,
            ));
        })?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other("worker thread exited during start"))??;
    Ok(WorkerHandle {
        inbox,
        _thread: thread,
    })
}

async fn run(
    id: usize,
    config: Arc<Config>,
    tls: Option<TlsServer>,
    upstream_tls: UpstreamTls,
    access_log: Option<WorkerLog>,
    tunnel: TunnelShared,
    messages: flume::Receiver<WorkerMsg>,
) {
    let worker = Rc::new(Worker {
        id,
        tls,
        upstream_tls,
        pool: UpstreamPool::new(config.upstream_keepalive, config.upstream_idle_timeout),
        config,
        table: RefCell::new(Rc::new(LocalTable(Arc::default()))),
        connections: Cell::new(0),
        last_limit_log: Cell::new(None),
        stats: RefCell::default(),
        drain: Drain::default(),
        access_log,
        tunnels: Default::default(),
        directory: tunnel.directory,
        session_index: tunnel.index,
        calls: tunnel.calls,
        peers: RefCell::new(Arc::from(Vec::new())),
    });
    if worker.access_log.is_some() {
        monoio::spawn(flush_access_log(worker.clone()));
    }
    crate::ipintel::install(worker.config.ip_intel.clone());
    monoio::spawn(sweep_upstream_pool(worker.clone()));
    // Dropping a port's sender stops its accept loop.
    let mut accepting: HashMap<u16, flume::Sender<accept::Stop>> = HashMap::new();
    let mut prepared: Option<Prepared> = None;
    let mut tunnel_accepting: Option<flume::Sender<()>> = None;
    while let Ok(msg) = messages.recv_async().await {
        match msg {
            WorkerMsg::Prepare {
                table,
                listeners,
                reply,
            } => {
                let adopted: io::Result<Vec<_>> = listeners
                    .into_iter()
                    .map(|(port, l)| {
                        if monoio::utils::is_legacy() {
                            l.set_nonblocking(true)?;
                        }
                        Ok((port, TcpListener::from_std(l)?))
                    })
                    .collect();
                let answer = match adopted {
                    Ok(listeners) => {
                        prepared = Some(Prepared { table, listeners });
                        Ok(())
                    }
                    Err(e) => {
                        prepared = None;
                        Err(format!("worker cannot adopt a listener: {e}"))
                    }
                };
                let _ = reply.send(answer);
            }
            WorkerMsg::Commit => {
                let Some(Prepared { table, listeners }) = prepared.take() else {
                    continue;
                };
                accepting.retain(|port, _| table.listen_ports.contains_key(port));
                worker
                    .pool
                    .retain(|upstream| table.names_upstream(upstream));
                *worker.table.borrow_mut() = Rc::new(LocalTable(table));
                for (port, listener) in listeners {
                    let (stop_tx, stop_rx) = flume::bounded(1);
                    accepting.insert(port, stop_tx);
                    monoio::spawn(accept::accept_loop(worker.clone(), listener, port, stop_rx));
                }
                tunnels::on_table(&worker);
            }
            WorkerMsg::Abort => prepared = None,
            WorkerMsg::StopAccepting(reply) => {
                let (closed_tx, closed_rx) = flume::unbounded();
                for (_, stop) in accepting.drain() {
                    let _ = stop.send(accept::Stop::Drain(closed_tx.clone()));
                }
                // Agents reconnect elsewhere (a new process taking over) once their
                // sessions end at the drain; none is accepted here meanwhile.
                drop(tunnel_accepting.take());
                drop(closed_tx);
                // Every accept loop drops its sender once its listener is closed.
                while closed_rx.recv_async().await.is_ok() {}
                let _ = reply.send(());
            }
            WorkerMsg::Drain(reply, deadline) => {
                // Connections see the drain: each answers what it is serving, and any
                // request that arrives, with `Connection: close`; idle ones close
                // after a short grace.
                accepting.clear();
                drop(tunnel_accepting.take());
                worker.drain.start();
                tunnels::end_sessions(&worker);
                let until = Instant::now() + deadline;
                while worker.connections.get() > 0 && Instant::now() < until {
                    monoio::time::sleep(Duration::from_millis(20)).await;
                }
                if let Some(log) = &worker.access_log {
                    log.flush();
                }
                let _ = reply.send(worker.connections.get() == 0);
            }
            WorkerMsg::Snapshot(reply) => {
                let mut snapshot = worker.stats.borrow().clone();
                snapshot.connections_active = worker.connections.get() as u64;
                snapshot.tunnel_sessions = worker.tunnels.sessions().len() as u64;
                let _ = reply.send(snapshot);
            }
            WorkerMsg::Peers(peers) => *worker.peers.borrow_mut() = peers,
            WorkerMsg::TunnelListener(listener, tls) => {
                if let Some(stop) = tunnels::accept(&worker, listener, tls) {
                    tunnel_accepting.replace(stop);
                }
            }
            WorkerMsg::Directory(copy) => worker.tunnels.set_directory(copy),
            WorkerMsg::Handover(req) => tunnels::serve_handover(&worker, req),
            WorkerMsg::SessionCommand {
                session,
                command,
                reply,
            } => tunnels::command(&worker, session, command, reply),
        }
    }
}

/// Closes idle upstream connections past the keep-alive idle time, now and then.
async fn sweep_upstream_pool(worker: Rc<Worker>) {
    let every = worker.pool.sweep_every();
    loop {
        monoio::time::sleep(every).await;
        worker.pool.sweep();
    }
}

/// Hands the worker's partial access-log buffer to the writer now and then, so that
/// lines of a quiet worker do not wait for a full buffer.
async fn flush_access_log(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(crate::access_log::FLUSH_EVERY).await;
        if let Some(log) = &worker.access_log {
            log.flush();
        }
    }
}
