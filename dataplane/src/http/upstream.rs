//! Connections to upstreams: opened with a timeout (and TLS where the upstream URL
//! says so), kept alive in a per-worker pool keyed by everything that makes one
//! reusable (address and TLS server name), reused newest first.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::pki_types::ServerName;

use super::buf::ReadBuf;
use crate::error::ProxyError;
use crate::upstream_tls::UpstreamTls;

/// Where an upstream is and whether to speak TLS to it (with this server name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct UpstreamAddr {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<ServerName<'static>>,
}

/// A connection to an upstream: plain or TLS.
#[derive(Debug)]
pub(crate) enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>, RawFd),
}

impl UpstreamStream {
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            UpstreamStream::Plain(s) => s.as_raw_fd(),
            UpstreamStream::Tls(_, fd) => *fd,
        }
    }
}

// SAFETY: both variants are Split (a TcpStream, and a TLS stream over one); a read
// half and a write half never touch the same state of either.
unsafe impl Split for UpstreamStream {}

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.read(buf).await,
            UpstreamStream::Tls(s, _) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.readv(buf).await,
            UpstreamStream::Tls(s, _) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.write(buf).await,
            UpstreamStream::Tls(s, _) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.writev(buf).await,
            UpstreamStream::Tls(s, _) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.flush().await,
            UpstreamStream::Tls(s, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.shutdown().await,
            UpstreamStream::Tls(s, _) => s.shutdown().await,
        }
    }
}

/// Opens a connection to `target` within `timeout`, TLS included.
pub(crate) async fn connect(
    target: &UpstreamAddr,
    timeout: Duration,
    tls: &UpstreamTls,
    http: bool,
) -> Result<UpstreamStream, ProxyError> {
    let open = async {
        let stream = TcpStream::connect_addr(target.addr)
            .await
            .map_err(|_| ProxyError::UpstreamUnreachable)?;
        let _ = stream.set_nodelay(true);
        let Some(name) = &target.tls else {
            return Ok(UpstreamStream::Plain(stream));
        };
        let fd = stream.as_raw_fd();
        let config = if http { &tls.http } else { &tls.stream };
        let connector = monoio_rustls::TlsConnector::from(config.clone());
        match connector.connect(name.clone(), stream).await {
            Ok(tls) => Ok(UpstreamStream::Tls(Box::new(tls), fd)),
            Err(e) => {
                log::debug!("TLS to upstream {}: {e}", target.addr);
                Err(ProxyError::UpstreamTlsFailed)
            }
        }
    };
    match monoio::time::timeout(timeout, open).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::UpstreamTimeout),
    }
}

/// A connection to an upstream with its own read buffer.
#[derive(Debug)]
pub(crate) struct UpstreamConn {
    pub(crate) stream: UpstreamStream,
    pub(crate) rb: ReadBuf,
    /// Whether it served a request before; a reused connection may have been closed
    /// by the upstream meanwhile, which justifies one retry.
    pub(crate) reused: bool,
    idle_since: Instant,
}

/// Idle upstream connections of one worker. Never shared between threads.
#[derive(Debug)]
pub(crate) struct UpstreamPool {
    idle: RefCell<crate::routes::FastMap<UpstreamAddr, Vec<UpstreamConn>>>,
    max_idle_per_addr: usize,
    idle_timeout: Duration,
}

impl UpstreamPool {
    pub(crate) fn new(max_idle_per_addr: usize, idle_timeout: Duration) -> Self {
        UpstreamPool {
            idle: RefCell::default(),
            max_idle_per_addr,
            idle_timeout,
        }
    }

    /// An idle connection to `target`, if one is fresh enough.
    pub(crate) fn take(&self, target: &UpstreamAddr) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(target)?;
        while let Some(mut conn) = list.pop() {
            if conn.idle_since.elapsed() < self.idle_timeout {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose last exchange ended cleanly.
    pub(crate) fn put(&self, target: &UpstreamAddr, mut conn: UpstreamConn) {
        if self.max_idle_per_addr == 0 || !conn.rb.is_empty() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(target.clone()).or_default();
        if list.len() >= self.max_idle_per_addr {
            list.remove(0);
        }
        list.push(conn);
    }

    /// Opens a new HTTP connection to `target`.
    pub(crate) async fn connect(
        target: &UpstreamAddr,
        timeout: Duration,
        tls: &UpstreamTls,
    ) -> Result<UpstreamConn, ProxyError> {
        Ok(UpstreamConn {
            stream: connect(target, timeout, tls, true).await?,
            rb: ReadBuf::with_capacity(super::body::BODY_BUFFER),
            reused: false,
            idle_since: Instant::now(),
        })
    }
}
