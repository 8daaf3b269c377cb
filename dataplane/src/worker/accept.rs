//! A worker's accept loop for one port: admit the connection (or refuse it above the
//! connection limit), count it, and hand it to the server of its scheme.

use std::rc::Rc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};

use monoio::net::{TcpListener, TcpStream};

use super::Worker;
use crate::confine::confine;
use crate::policy::ConnInfo;
use innergate_table::Scheme;

/// How an accept loop is told to end; dropping its sender ends it too (a table
/// that no longer has the port).
#[derive(Debug)]
pub(super) enum Stop {
    /// A drain: serve what the listener has queued, close it, then drop this sender.
    Drain(flume::Sender<()>),
}

pub(super) async fn accept_loop(
    worker: Rc<Worker>,
    listener: TcpListener,
    url_port: u16,
    stop: flume::Receiver<Stop>,
) {
    let mut stop = std::pin::pin!(stop.recv_async());
    loop {
        monoio::select! {
            stopped = &mut stop => {
                if let Ok(Stop::Drain(closed)) = stopped {
                    take_backlog(&worker, &listener, url_port);
                    drop(listener);
                    drop(closed);
                }
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => admit(&worker, stream, peer, url_port),
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    log::warn!("accept on port {url_port}: {e}");
                    monoio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Accepts the connections the kernel has queued on `listener` (clients whose
/// connect already succeeded must be served, not reset), then stops it listening;
/// new connects are refused from here on.
fn take_backlog(worker: &Rc<Worker>, listener: &TcpListener, url_port: u16) {
    let fd = listener.as_raw_fd();
    // SAFETY: fcntl(2) on the listening socket we own; it is closed right after.
    let nonblocking = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if !nonblocking {
        // Without it accept4 would wait for a connection: close at once instead.
        log::warn!("drain: cannot make the listener of port {url_port} non-blocking");
        // SAFETY: shutdown(2) on the listening socket we own.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        return;
    }
    loop {
        // SAFETY: accept4(2) without an address buffer; the new fd, if any, is ours.
        let conn = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // A queued client that gave up, or a signal: the others are still there.
                Some(libc::ECONNABORTED | libc::EINTR) => continue,
                _ => break,
            }
        }
        // SAFETY: `conn` is a connected socket that nothing else owns.
        let std = unsafe { std::net::TcpStream::from_raw_fd(conn) };
        let (Ok(peer), true) = (std.peer_addr(), prepare(&std)) else {
            continue;
        };
        match TcpStream::from_std(std) {
            Ok(stream) => admit(worker, stream, peer, url_port),
            Err(e) => log::warn!("drain: cannot adopt a queued connection: {e}"),
        }
    }
    // SAFETY: shutdown(2) on the listening socket we own: it stops listening.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Makes an accepted std socket what this worker's driver expects: blocking for
/// io_uring, non-blocking for epoll.
fn prepare(stream: &std::net::TcpStream) -> bool {
    stream.set_nonblocking(monoio::utils::is_legacy()).is_ok()
}

/// Takes an accepted connection (or refuses it above the connection limit), counts
/// it, and spawns its task.
fn admit(worker: &Rc<Worker>, stream: TcpStream, peer: SocketAddr, url_port: u16) {
    if !worker.admit_connection() {
        return;
    }
    let count = worker.count_connection();
    let worker = worker.clone();
    // The scheme comes from the current table: a port may change protocol between
    // tables while its listener stays.
    let scheme = worker.table().listen_ports.get(&url_port).copied();
    monoio::spawn(async move {
        let _count = count;
        let serve = std::pin::pin!(serve(worker.clone(), scheme, stream, peer, url_port));
        // Exchanges confine their own panics (answering 500 where they can); this
        // catches the rest: handshakes and byte streams.
        if let Err(panic) = confine(serve).await {
            worker.stats.borrow_mut().panics += 1;
            log::error!(
                "panic while serving a connection of {peer} on port {url_port}: {}; \
                 closing this connection only",
                crate::confine::message(&*panic)
            );
        }
    });
}

/// Serves an accepted connection by the scheme of its port.
async fn serve(
    worker: Rc<Worker>,
    scheme: Option<Scheme>,
    stream: TcpStream,
    peer: SocketAddr,
    url_port: u16,
) {
    match scheme {
        // The other kinds live in their own allocation, so that the task of a plain
        // HTTP connection, the most numerous kind, is no larger than its own path needs.
        Some(Scheme::Tcp) => Box::pin(crate::tcp::serve(worker, stream, peer, url_port)).await,
        Some(Scheme::Https) => {
            Box::pin(crate::tls::https::serve_https(
                worker, stream, peer, url_port,
            ))
            .await
        }
        Some(Scheme::Tls) => {
            Box::pin(crate::tls::passthrough::serve_tls(
                worker, stream, peer, url_port,
            ))
            .await
        }
        Some(_) => {
            let _ = stream.set_nodelay(true);
            let info = ConnInfo::new(
                worker.id,
                "http",
                None,
                peer,
                stream.local_addr().map_or(0, |a| a.port()),
            );
            let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
            crate::http::conn::serve(worker, stream, peer, url_port, info, fd).await
        }
        None => {}
    }
}

pub(super) fn log_connection_limit(worker: &Worker) {
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
