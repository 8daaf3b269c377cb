//! Idle upstream connections of one worker, kept alive and reused newest first, keyed
//! by everything that makes one reusable (address and TLS server name).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::{connect, Upstream, UpstreamAddr, UpstreamStream, UpstreamTls};
use crate::error::ProxyError;
use crate::fast_map::FastMap;
use crate::http::buf::ReadBuf;

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

impl UpstreamConn {
    /// A fresh connection (never used before).
    pub(crate) fn new(stream: UpstreamStream) -> UpstreamConn {
        UpstreamConn {
            stream,
            rb: ReadBuf::with_capacity(crate::http::body::BODY_BUFFER),
            reused: false,
            idle_since: Instant::now(),
        }
    }
}

/// Idle upstream connections of one worker. Never shared between threads.
#[derive(Debug)]
pub(crate) struct UpstreamPool {
    idle: RefCell<FastMap<Upstream, Vec<UpstreamConn>>>,
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
    pub(crate) fn take(&self, target: &Upstream) -> Option<UpstreamConn> {
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
    pub(crate) fn put(&self, target: &Upstream, mut conn: UpstreamConn) {
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

    /// Closes idle connections that waited longer than the idle timeout. Runs now and
    /// then on every worker, so that an upstream nobody sends to any more does not
    /// keep its connections (and their fds) open.
    pub(crate) fn sweep(&self) {
        let timeout = self.idle_timeout;
        self.idle.borrow_mut().retain(|_, list| {
            list.retain(|conn| conn.idle_since.elapsed() < timeout);
            !list.is_empty()
        });
    }

    /// Closes the idle connections of every upstream that `keep` refuses (those a
    /// new table no longer names).
    pub(crate) fn retain(&self, mut keep: impl FnMut(&Upstream) -> bool) {
        self.idle.borrow_mut().retain(|addr, _| keep(addr));
    }

    /// How often [`UpstreamPool::sweep`] should run: a fraction of the idle timeout.
    pub(crate) fn sweep_every(&self) -> Duration {
        (self.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// Opens a new HTTP connection to `target`.
    pub(crate) async fn connect(
        target: &UpstreamAddr,
        timeout: Duration,
        tls: &UpstreamTls,
    ) -> Result<UpstreamConn, ProxyError> {
        Ok(UpstreamConn::new(
            connect(target, timeout, tls, true).await?,
        ))
    }
}
