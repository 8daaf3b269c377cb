//! Upstreams: where they are ([`addr`]), connections opened with a timeout and TLS
//! where the upstream URL says so ([`tls`]), and the per-worker pool that keeps them
//! alive ([`pool`]).

mod addr;
mod pool;
mod tls;

pub(crate) use addr::UpstreamAddr;
pub(crate) use pool::{UpstreamConn, UpstreamPool};
pub(crate) use tls::UpstreamTls;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::error::ProxyError;
use crate::tunnel::stream::{TunnelStream, NO_FD};

/// Where an upstream step goes: an address the data plane dials, or the tunnel
/// sessions of an endpoint (named by its id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Upstream {
    Dial(UpstreamAddr),
    Tunnel(Arc<str>),
}

/// A connection to an upstream: plain, TLS, or a tunnel stream.
#[derive(Debug)]
pub(crate) enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>, RawFd),
    Tunnel(TunnelStream),
}

impl UpstreamStream {
    /// The socket underneath, for relay watchdogs; [`NO_FD`] for a tunnel stream.
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            UpstreamStream::Plain(s) => s.as_raw_fd(),
            UpstreamStream::Tls(_, fd) => *fd,
            UpstreamStream::Tunnel(_) => NO_FD,
        }
    }
}

// SAFETY: every variant is Split (a TcpStream, and a TLS stream over one); a read
// half and a write half never touch the same state of either.
unsafe impl Split for UpstreamStream {}

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.read(buf).await,
            UpstreamStream::Tls(s, _) => s.read(buf).await,
            UpstreamStream::Tunnel(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.readv(buf).await,
            UpstreamStream::Tls(s, _) => s.readv(buf).await,
            UpstreamStream::Tunnel(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.write(buf).await,
            UpstreamStream::Tls(s, _) => s.write(buf).await,
            UpstreamStream::Tunnel(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.writev(buf).await,
            UpstreamStream::Tls(s, _) => s.writev(buf).await,
            UpstreamStream::Tunnel(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.flush().await,
            UpstreamStream::Tls(s, _) => s.flush().await,
            UpstreamStream::Tunnel(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.shutdown().await,
            UpstreamStream::Tls(s, _) => s.shutdown().await,
            UpstreamStream::Tunnel(s) => s.shutdown().await,
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
