//! The bench's own HTTP/1.1 load client: keep-alive connections, one thread each,
//! either as fast as answers come (closed loop) or at a fixed total request rate
//! (open loop). At a fixed rate, latency is counted from the moment a request was
//! due, not from when it was sent, so a stalled system is charged for the requests
//! it held up (no coordinated omission), as wrk2 does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;

use super::{HttpResult, CURVE};
use crate::host::CpuSet;

/// One load run.
#[derive(Clone, Debug)]
pub struct Load<'a> {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The Host header (and the TLS server name).
    pub host: &'a str,
    /// The request target.
    pub path: &'a str,
    /// Open connections, one thread each.
    pub connections: usize,
    /// How long.
    pub duration: Duration,
    /// Total requests per second over all connections; `None` for a closed loop.
    pub rate: Option<f64>,
    /// Ask for `Connection: close` (a new connection, and handshake, per request).
    pub close: bool,
    /// TLS client configuration for https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Where the client threads run.
    pub cpus: Option<&'a CpuSet>,
}

impl Load<'_> {
    /// Runs the load and merges what every connection measured.
    pub fn run(&self) -> Result<HttpResult> {
        let connection = if self.close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n{connection}\r\n",
            self.path, self.host
        );
        // Every connection is open and its thread running before the clock starts,
        // so that no request is charged for thread start-up or the TCP handshake.
        let ready = std::sync::Barrier::new(self.connections.max(1));
        let start = std::sync::OnceLock::new();
        let results = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..self.connections.max(1))
                .map(|i| {
                    let request = request.as_bytes();
                    let (ready, start) = (&ready, &start);
                    scope.spawn(move || self.connection(i, request, ready, start))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().map_err(|_| anyhow!("a load thread panicked"))?)
                .collect::<Result<Vec<_>>>()
        })?;
        let mut histogram = new_histogram();
        let mut result = HttpResult {
            seconds: self.duration.as_secs_f64(),
            ..HttpResult::default()
        };
        for (h, errors) in results {
            histogram.add(&h)?;
            result.errors += errors;
        }
        result.requests = histogram.len();
        result.latency_ms = CURVE
            .iter()
            .map(|&p| {
                let us = match p {
                    0.0 => histogram.min(),
                    _ => histogram.value_at_quantile(p / 100.0),
                };
                (p, us as f64 / 1000.0)
            })
            .collect();
        Ok(result)
    }

    /// One connection's loop: its latencies (µs) and its error count.
    fn connection(
        &self,
        index: usize,
        request: &[u8],
        ready: &std::sync::Barrier,
        start: &std::sync::OnceLock<Instant>,
    ) -> Result<(Histogram<u64>, u64)> {
        let pinned = self.cpus.map(CpuSet::pin_current_thread);
        let mut conn: Option<Conn> = Conn::open(self.addr, self.host, self.tls.as_ref()).ok();
        // Every thread reaches the barrier, or the others would wait for ever.
        ready.wait();
        if let Some(Err(e)) = pinned {
            return Err(e);
        }
        let start = *start.get_or_init(|| Instant::now() + Duration::from_millis(5));
        let mut histogram = new_histogram();
        let mut errors = 0u64;
        let end = start + self.duration;
        // At a fixed rate each connection sends every `interval`, the connections
        // staggered evenly over one interval.
        let interval = self
            .rate
            .map(|r| Duration::from_secs_f64(self.connections.max(1) as f64 / r.max(1.0)));
        let mut due = start
            + interval.map_or(Duration::ZERO, |i| {
                i * index as u32 / self.connections.max(1) as u32
            });
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let now = Instant::now();
            if interval.is_some() && due > now {
                std::thread::sleep(due - now);
            }
            let sent = match interval {
                Some(_) => due,
                None => Instant::now(),
            };
            if sent >= end {
                break;
            }
            if conn.is_none() {
                conn = Conn::open(self.addr, self.host, self.tls.as_ref()).ok();
            }
            let answered = match conn.as_mut() {
                Some(c) => c.exchange(request, &mut buf),
                None => Err(std::io::Error::other("connect failed")),
            };
            match answered {
                Ok(Exchange { status, keep_alive }) => {
                    let micros = sent.elapsed().as_micros() as u64;
                    if (200..400).contains(&status) {
                        histogram.saturating_record(micros.max(1));
                    } else {
                        errors += 1;
                    }
                    if !keep_alive {
                        conn = None;
                    }
                }
                Err(_) => {
                    errors += 1;
                    conn = None;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if let Some(i) = interval {
                due += i;
            }
        }
        Ok((histogram, errors))
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A plain or TLS client connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// What one request/response exchange gave.
struct Exchange {
    status: u16,
    keep_alive: bool,
}

impl Conn {
    fn open(
        addr: SocketAddr,
        host: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(match tls {
            None => Conn::Plain(tcp),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(std::io::Error::other)?;
                let client = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(std::io::Error::other)?;
                Conn::Tls(Box::new(rustls::StreamOwned::new(client, tcp)))
            }
        })
    }

    /// Sends `request` and reads one whole response (Content-Length framed).
    fn exchange(&mut self, request: &[u8], buf: &mut [u8]) -> std::io::Result<Exchange> {
        self.write_all(request)?;
        self.flush()?;
        let mut filled = 0;
        let (status, head_len, body_len, keep_alive) = loop {
            let n = self.read(&mut buf[filled..])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&buf[..filled]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let header = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| h.value)
                    };
                    let body_len: usize = header("content-length")
                        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
                        .ok_or_else(|| std::io::Error::other("no content-length"))?;
                    let keep_alive =
                        !header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
                    break (response.code.unwrap_or(0), head_len, body_len, keep_alive);
                }
                Ok(httparse::Status::Partial) if filled < buf.len() => continue,
                _ => return Err(std::io::Error::other("bad response head")),
            }
        };
        let mut left = (head_len + body_len).saturating_sub(filled);
        if filled > head_len + body_len {
            return Err(std::io::Error::other("bytes after the response"));
        }
        while left > 0 {
            let want = left.min(buf.len());
            let n = self.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            left -= n;
        }
        Ok(Exchange { status, keep_alive })
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}
