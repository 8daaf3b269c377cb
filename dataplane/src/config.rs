//! The data plane's settings, with defaults chosen against what nginx and HAProxy ship.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::ipintel::IpIntel;

/// Everything a data plane process is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Worker threads, one runtime each.
    pub workers: usize,
    /// Pin worker `i` to CPU `i mod cores`.
    pub pin_workers: bool,
    /// io_uring submission-queue size per worker.
    pub ring_entries: u32,
    /// When the kernel runs io_uring completion work for a worker.
    pub ring_taskrun: RingTaskRun,
    /// The address public listeners bind.
    pub bind: IpAddr,
    /// URL port → local port (0: chosen by the OS). Unmapped ports listen as named.
    pub port_map: BTreeMap<u16, u16>,
    /// Where control connects to push tables.
    pub control_socket: Option<PathBuf>,
    /// Take the control socket over from a running data plane (upgrades).
    pub takeover: bool,
    /// Where the last applied table is kept for restarts without control.
    pub state_dir: Option<PathBuf>,
    /// Where `/healthz` and `/metrics` are served.
    pub admin: Option<std::net::SocketAddr>,
    /// Where access log lines (JSON) are appended; none when unset.
    pub access_log: Option<PathBuf>,
    /// How long a shutdown waits for requests and streams in flight.
    pub drain_timeout: Duration,
    /// Largest request head accepted (431 above it). nginx: 8–32 KiB, HAProxy: 16 KiB.
    pub max_header_bytes: usize,
    /// Connections a worker holds at most; more are closed at accept.
    pub max_connections_per_worker: usize,
    /// Time for a whole request head to arrive (nginx client_header_timeout 60 s,
    /// HAProxy timeout http-request often 10 s).
    pub header_timeout: Duration,
    /// Time a kept-alive client connection may sit idle (nginx 75 s).
    pub idle_timeout: Duration,
    /// Time between two reads or writes of a client body (nginx 60 s).
    pub body_timeout: Duration,
    /// Time to connect to an upstream (nginx proxy_connect_timeout 60 s).
    pub upstream_connect_timeout: Duration,
    /// Time between two reads from an upstream (nginx proxy_read_timeout 60 s).
    pub upstream_read_timeout: Duration,
    /// Idle upstream connections kept per upstream address and worker.
    pub upstream_keepalive: usize,
    /// How long an idle upstream connection is reused.
    pub upstream_idle_timeout: Duration,
    /// Time a tcp connection may pass no byte in either direction (HAProxy timeout
    /// tunnel is often 1h).
    pub tcp_idle_timeout: Duration,
    /// Where agents open tunnel sessions; none when unset.
    pub tunnel: Option<std::net::SocketAddr>,
    /// The tunnel listener's certificate chain and key (PEM); the https default pair
    /// when unset.
    pub tunnel_cert: Option<PathBuf>,
    pub tunnel_key: Option<PathBuf>,
    /// How often the data plane sends a heartbeat on each tunnel session.
    pub tunnel_heartbeat: Duration,
    /// How long a session may stay silent before it counts as dead (its endpoints
    /// go offline).
    pub tunnel_timeout: Duration,
    /// The default certificate chain (PEM) for https.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// A directory of `HOST.crt` + `HOST.key` pairs chosen by SNI.
    pub tls_cert_dir: Option<PathBuf>,
    /// Time for a TLS handshake (HAProxy: timeout client; nginx: client_header_timeout).
    pub tls_handshake_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for TLS to upstreams.
    pub upstream_ca: Option<PathBuf>,
    /// Do not verify upstream certificates (development only).
    pub upstream_tls_insecure: bool,
    /// The largest buffer a tcp/tls byte stream grows to, per direction.
    pub tcp_buffer: usize,
    /// How plain byte streams move: a copy loop or splice(2).
    pub tcp_forwarding: Forwarding,
    /// The geo databases and IP category lists behind the `conn.geo.*` and
    /// `conn.client_ip.*` / `conn.server_ip.*` policy variables, loaded once before
    /// start (`--geoip-db`, `--ip-categories`); empty, so every such variable is
    /// empty, when none were given. Workers read it through their `Arc<Config>`.
    pub ip_intel: Arc<IpIntel>,
}

/// How bytes of tcp and tls-passthrough connections move between two plain sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Forwarding {
    /// Read into a buffer that grows to `tcp_buffer`, write it out.
    Copy,
    /// splice(2) through a kernel pipe per direction (zero copy).
    Splice,
}

/// When the kernel runs a worker's io_uring completion work ("task work"): when a
/// socket on another CPU wakes it, interrupting the worker (the kernel's default), or
/// in batches at the worker's own next io_uring call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RingTaskRun {
    /// Interrupt the worker (an inter-processor interrupt per wake-up).
    Interrupt,
    /// IORING_SETUP_COOP_TASKRUN: no interrupt; run at the next kernel entry.
    Coop,
    /// IORING_SETUP_DEFER_TASKRUN (+ SINGLE_ISSUER, Linux 6.1+): run only when the
    /// worker waits for completions.
    Defer,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin_workers: false,
            ring_entries: 1024,
            ring_taskrun: RingTaskRun::Defer,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_map: BTreeMap::new(),
            control_socket: None,
            takeover: false,
            state_dir: None,
            admin: None,
            access_log: None,
            drain_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections_per_worker: 65_536,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_read_timeout: Duration::from_secs(60),
            upstream_keepalive: 64,
            upstream_idle_timeout: Duration::from_secs(30),
            tcp_idle_timeout: Duration::from_secs(3600),
            tunnel: None,
            tunnel_cert: None,
            tunnel_key: None,
            tunnel_heartbeat: Duration::from_secs(2),
            tunnel_timeout: Duration::from_secs(10),
            tls_cert: None,
            tls_key: None,
            tls_cert_dir: None,
            tls_handshake_timeout: Duration::from_secs(10),
            upstream_ca: None,
            upstream_tls_insecure: false,
            tcp_buffer: 1 << 20,
            tcp_forwarding: Forwarding::Copy,
            ip_intel: Arc::default(),
        }
    }
}

/// Parses `URLPORT=LOCALPORT`.
pub fn parse_port_map(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{s}` is not URLPORT=LOCALPORT (e.g. 80=8080, or 80=0 for any)");
    let (a, b) = s.split_once('=').ok_or_else(bad)?;
    let url_port: u16 = a.trim().parse().map_err(|_| bad())?;
    let local: u16 = b.trim().parse().map_err(|_| bad())?;
    if url_port == 0 {
        return Err(bad());
    }
    Ok((url_port, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_maps() {
        assert_eq!(parse_port_map("80=0"), Ok((80, 0)));
        assert!(parse_port_map("0=80").is_err());
        assert!(parse_port_map("80").is_err());
    }
}
