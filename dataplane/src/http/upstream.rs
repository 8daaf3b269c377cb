//! Connections to upstreams: opened with a timeout, kept alive in a per-worker pool
//! keyed by address, reused newest first.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::buf::ReadBuf;
use crate::error::ProxyError;

/// A connection to an upstream with its own read buffer.
#[derive(Debug)]
pub(crate) struct UpstreamConn {
    pub(crate) stream: TcpStream,
    pub(crate) rb: ReadBuf,
    /// Whether it served a request before; a reused connection may have been closed
    /// by the upstream meanwhile, which justifies one retry.
    pub(crate) reused: bool,
    idle_since: Instant,
}

/// Idle upstream connections of one worker. Never shared between threads.
#[derive(Debug)]
pub(crate) struct UpstreamPool {
    idle: RefCell<HashMap<SocketAddr, Vec<UpstreamConn>>>,
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

    /// An idle connection to `addr`, if one is fresh enough.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(mut conn) = list.pop() {
            if conn.idle_since.elapsed() < self.idle_timeout {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose last exchange ended cleanly.
    pub(crate) fn put(&self, addr: SocketAddr, mut conn: UpstreamConn) {
        if self.max_idle_per_addr == 0 || !conn.rb.is_empty() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_idle_per_addr {
            list.remove(0);
        }
        list.push(conn);
    }

    /// Opens a new connection within `timeout`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<UpstreamConn, ProxyError> {
        let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => return Err(ProxyError::UpstreamUnreachable),
            Err(_) => return Err(ProxyError::UpstreamTimeout),
        };
        let _ = stream.set_nodelay(true);
        Ok(UpstreamConn {
            stream,
            rb: ReadBuf::with_capacity(16 * 1024),
            reused: false,
            idle_since: Instant::now(),
        })
    }
}
