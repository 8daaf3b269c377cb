//! A worker's accept loop for one port: admit the connection (or refuse it above the
//! connection limit), count it, and hand it to the server of its scheme.

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use super::Worker;
use innergate_table::Scheme;

pub(super) async fn accept_loop(
    worker: Rc<Worker>,
    listener: TcpListener,
    url_port: u16,
    stop: flume::Receiver<()>,
) {
    let mut stop = std::pin::pin!(stop.recv_async());
    loop {
        monoio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if worker.connections.get() >= worker.config.max_connections_per_worker {
                        log_connection_limit(&worker);
                        drop(stream);
                        continue;
                    }
                    worker.connections.set(worker.connections.get() + 1);
                    worker.stats.borrow_mut().connections_total += 1;
                    let worker = worker.clone();
                    // The scheme comes from the current table: a port may change
                    // protocol between tables while its listener stays.
                    let scheme = worker.table().listen_ports.get(&url_port).copied();
                    monoio::spawn(async move {
                        let _count = ConnectionCount(worker.clone());
                        match scheme {
                            // The other kinds live in their own allocation, so that the
                            // task of a plain HTTP connection, the most numerous kind, is
                            // no larger than its own path needs.
                            Some(Scheme::Tcp) => Box::pin(crate::tcp::serve(worker, stream, peer, url_port)).await,
                            Some(Scheme::Https) => {
                                Box::pin(crate::tls::https::serve_https(worker, stream, peer, url_port)).await
                            }
                            Some(Scheme::Tls) => {
                                Box::pin(crate::tls::passthrough::serve_tls(worker, stream, peer, url_port)).await
                            }
                            Some(_) => {
                                let _ = stream.set_nodelay(true);
                                let server_port = stream.local_addr().map_or(0, |a| a.port());
                                let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
                                crate::http::conn::serve(worker, stream, peer, url_port, server_port, "http", None, fd)
                                    .await
                            }
                            None => {}
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    log::warn!("accept on port {url_port}: {e}");
                    monoio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn log_connection_limit(worker: &Worker) {
    let now = Instant::now();
    let due = worker
        .last_limit_log
        .get()
        .is_none_or(|t| now.duration_since(t) > Duration::from_secs(5));
    if due {
        worker.last_limit_log.set(Some(now));
        log::warn!(
            "connection limit reached: {} connections on this worker \
             (--max-connections-per-worker); closing new connections",
            worker.config.max_connections_per_worker
        );
    }
}

/// Counts a connection for as long as it is served.
struct ConnectionCount(Rc<Worker>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}
