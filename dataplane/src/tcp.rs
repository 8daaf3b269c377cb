//! tcp endpoints: routed by port, `on_tcp_connect` (with forward-internal between
//! tcp endpoints, a pool member per connection), then bytes both ways through
//! [`crate::relay`] until both sides are done.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use monoio::net::TcpStream;

use crate::config::Forwarding;
use crate::error::ProxyError;
use crate::policy::{self, ConnInfo, ConnectOutcome, RequestState};
use crate::relay::{pipe, splice_pipe};
use crate::routes::Target;
use crate::upstream::{self, Upstream, UpstreamStream};
use crate::worker::Worker;

/// Serves one accepted connection on a public tcp port.
pub(crate) async fn serve(worker: Rc<Worker>, client: TcpStream, peer: SocketAddr, url_port: u16) {
    let table = worker.table();
    let Some(pool) = table.public_tcp(url_port) else {
        return;
    };
    let conn = ConnInfo::new(
        worker.id,
        "tcp",
        None,
        peer,
        client.local_addr().map_or(0, |a| a.port()),
    );
    let mut state = RequestState::default();
    let entry = table.pick(pool);
    let slot = table.route(entry).stats_slot;
    let target = match policy::run_connect(&table, entry, &conn, &mut state) {
        ConnectOutcome::Proceed {
            target: Target::Upstream(upstream),
            ..
        } => upstream,
        ConnectOutcome::Proceed {
            target: Target::None,
            ..
        } => {
            log::warn!(
                "tcp port {url_port}: a policy let a connection through without an upstream"
            );
            return;
        }
        ConnectOutcome::Proceed {
            target: Target::Unresolved,
            ..
        } => return,
        ConnectOutcome::Close(reason) => {
            if let Some(code) = reason {
                log::debug!("tcp port {url_port}: {peer} closed by policy ({code})");
            }
            return;
        }
    };
    // The connection no longer needs the table; let a replaced one go.
    drop(table);
    let upstream = match open_stream(&worker, &target, peer).await {
        Ok(stream) => stream,
        Err(e) => {
            log::debug!("tcp port {url_port}: upstream: {}", e.message());
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let config = &worker.config;
    let (bytes_in, bytes_out) = match upstream {
        UpstreamStream::Plain(plain) if config.tcp_forwarding == Forwarding::Splice => {
            splice_pipe(client, plain, config.tcp_idle_timeout).await
        }
        upstream => {
            let fds = [client.as_raw_fd(), upstream.raw_fd()];
            pipe(
                client,
                upstream,
                fds,
                config.tcp_idle_timeout,
                config.tcp_buffer,
            )
            .await
        }
    };
    worker
        .stats
        .borrow_mut()
        .record_stream(slot, bytes_in, bytes_out);
}

/// Opens the byte stream of a tcp or tls connection: a dialled connection (plain:
/// TLS passthrough and tcp alike speak whatever the client speaks), or a stream of
/// the agent's tunnel session.
pub(crate) async fn open_stream(
    worker: &Worker,
    target: &Upstream,
    peer: SocketAddr,
) -> Result<UpstreamStream, ProxyError> {
    let opened = match target {
        Upstream::Dial(addr) => {
            let timeout = worker.config.upstream_connect_timeout;
            upstream::connect(addr, timeout, &worker.upstream_tls, false).await
        }
        Upstream::Tunnel(endpoint) => crate::tunnel::open(worker, endpoint, &peer.to_string())
            .await
            .map(UpstreamStream::Tunnel),
    };
    if opened.is_err() {
        worker.stats.borrow_mut().upstream_connect_errors += 1;
    }
    opened
}
