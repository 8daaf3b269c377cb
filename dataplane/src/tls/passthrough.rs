//! tls endpoints: routed by the SNI of the ClientHello without terminating it, unless
//! the policy's `terminate-tls` ends TLS here; then bytes go on as tcp.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::PrefixedReadIo;
use monoio::net::TcpStream;

use crate::http::buf::ReadBuf;
use crate::upstream::Upstream;
use crate::worker::Worker;

/// Serves one connection on a public tls port: read the ClientHello for its SNI
/// (without answering it), route, run on_tcp_connect, then either replay the hello to
/// the upstream and pass bytes through, or end TLS here when `terminate-tls` asked.
pub(crate) async fn serve_tls(
    worker: Rc<Worker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    url_port: u16,
) {
    use crate::policy::{self, ConnInfo, ConnectOutcome, RequestState};
    use crate::routes::Target;

    let limit = worker.config.tls_handshake_timeout;
    let started = std::time::Instant::now();
    let mut rb = ReadBuf::with_capacity(4096);
    let read_hello = async {
        loop {
            match super::sni::client_hello_sni(rb.bytes()) {
                Ok(Some(sni)) => return Some(sni),
                Ok(None) => {}
                Err(_) => return None,
            }
            match rb.fill(&mut stream, 64 * 1024).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    };
    let sni = match monoio::time::timeout(limit, read_hello).await {
        Ok(Some(Some(sni))) => sni,
        // No SNI, not TLS, closed or too slow: nothing to route by.
        _ => return,
    };
    let table = worker.table();
    let Some(pool) = table.public_by_host(url_port, &sni) else {
        return;
    };
    let entry = table.pick(pool);
    let conn = ConnInfo::new(
        worker.id,
        "tls",
        Some(sni),
        peer,
        stream.local_addr().map_or(0, |a| a.port()),
    );
    let mut state = RequestState::default();
    let slot = table.route(entry).stats_slot;
    let (target, terminate) = match policy::run_connect(&table, entry, &conn, &mut state) {
        ConnectOutcome::Proceed {
            target: Target::Upstream(upstream),
            terminate,
        } => (upstream, terminate),
        _ => return,
    };
    let termination = terminate.and_then(|(idx, action)| table.route(idx).termination(action));
    drop(table);
    // Without terminate-tls the client's TLS passes through: the upstream is reached
    // over plain TCP whatever its scheme says.
    let target = match (termination.is_some(), target) {
        (false, Upstream::Dial(addr)) => Upstream::Dial(crate::upstream::UpstreamAddr {
            addr: addr.addr,
            tls: None,
        }),
        (_, target) => target,
    };
    let upstream = match crate::tcp::open_stream(&worker, &target, peer).await {
        Ok(upstream) => upstream,
        Err(e) => {
            log::debug!("tls port {url_port}: upstream: {}", e.message());
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let fds = {
        use std::os::fd::AsRawFd;
        [stream.as_raw_fd(), upstream.raw_fd()]
    };
    let hello = rb.bytes().to_vec();
    let hello_len = hello.len() as u64;
    let idle = worker.config.tcp_idle_timeout;
    let moved = match termination {
        Some(config) => {
            let io = PrefixedReadIo::new(stream, io::Cursor::new(hello));
            let remaining = limit.saturating_sub(started.elapsed());
            let acceptor = monoio_rustls::TlsAcceptor::from(config.config);
            let accept = acceptor.accept(io);
            match monoio::time::timeout(remaining, accept).await {
                Ok(Ok(tls)) => {
                    crate::relay::pipe(tls, upstream, fds, idle, worker.config.tcp_buffer).await
                }
                _ => {
                    log::debug!("tls port {url_port}: handshake with {peer} failed");
                    (0, 0)
                }
            }
        }
        None => {
            let mut upstream = upstream;
            let mut hello = hello;
            let splice = worker.config.tcp_forwarding == crate::config::Forwarding::Splice;
            if crate::http::buf::write_all(&mut upstream, &mut hello)
                .await
                .is_err()
            {
                return;
            }
            let (a_to_b, b_to_a) = match upstream {
                crate::upstream::UpstreamStream::Plain(plain) if splice => {
                    crate::relay::splice_pipe(stream, plain, idle).await
                }
                upstream => {
                    crate::relay::pipe(stream, upstream, fds, idle, worker.config.tcp_buffer).await
                }
            };
            (a_to_b + hello_len, b_to_a)
        }
    };
    worker
        .stats
        .borrow_mut()
        .record_stream(slot, moved.0, moved.1);
}
