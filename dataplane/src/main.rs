//! The `innergate-dataplane` binary: flags, logging, signals.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use innergate_dataplane::config::{parse_port_map, Config, Forwarding, RingTaskRun};
use innergate_dataplane::ipintel::IpIntel;
use innergate_table::units::parse_duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// innergate data plane: serves the endpoints that control pushes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Pin each worker thread to a core.
    #[arg(long)]
    pin_workers: bool,
    /// Address public listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Listen for URL port A on local port B (`A=B`; B=0 lets the OS choose). Repeatable.
    #[arg(long = "port-map", value_parser = parse_port_map)]
    port_map: Vec<(u16, u16)>,
    /// Unix socket where control pushes endpoint tables.
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Start beside a running data plane to replace it (zero-downtime upgrade): take
    /// its control socket over and serve the table of the shared --state-dir on the
    /// same ports (SO_REUSEPORT); then stop the old one with SIGTERM.
    #[arg(long)]
    takeover: bool,
    /// Directory keeping the last applied table for restarts without control.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Address for /healthz and /metrics (e.g. 127.0.0.1:9090).
    #[arg(long)]
    admin: Option<std::net::SocketAddr>,
    /// Append one JSON line per HTTP request to this file (SIGHUP reopens it).
    #[arg(long)]
    access_log: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long requests and streams in flight may take to finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Largest request head in bytes (431 above).
    #[arg(long, default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Most client connections per worker.
    #[arg(long, default_value_t = 65_536)]
    max_connections_per_worker: usize,
    /// Time for a request head to arrive.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Time an idle keep-alive client connection is kept.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Time between reads or writes of a client body.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// Time to connect to an upstream (504 after).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    upstream_connect_timeout: Duration,
    /// Time between reads from an upstream (504 before the response head).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    upstream_read_timeout: Duration,
    /// Idle upstream connections kept per upstream and worker.
    #[arg(long, default_value_t = 64)]
    upstream_keepalive: usize,
    /// How long an idle upstream connection is kept for reuse before it is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    upstream_idle_timeout: Duration,
    /// Time a tcp connection may pass no byte in either direction.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    tcp_idle_timeout: Duration,
    /// Where agents open tunnel sessions (the hosted service's agent protocol over
    /// TLS), e.g. 0.0.0.0:4443.
    #[arg(long)]
    tunnel: Option<std::net::SocketAddr>,
    /// The tunnel listener's certificate chain (PEM); default: --tls-cert.
    #[arg(long, requires = "tunnel_key")]
    tunnel_cert: Option<PathBuf>,
    /// The tunnel listener's private key (PEM); default: --tls-key.
    #[arg(long, requires = "tunnel_cert")]
    tunnel_key: Option<PathBuf>,
    /// How often each tunnel session gets a heartbeat.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    tunnel_heartbeat: Duration,
    /// How long a silent tunnel session lives (then its endpoints go offline).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tunnel_timeout: Duration,
    /// Default certificate chain (PEM) for https endpoints.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory of HOST.crt + HOST.key pairs picked by SNI (`*.example.com.crt` for a
    /// wildcard).
    #[arg(long)]
    tls_cert_dir: Option<PathBuf>,
    /// Time for a TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for https:// and tls:// upstreams, besides
    /// the system's.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// Do not verify the certificates of https:// and tls:// upstreams (development).
    #[arg(long)]
    upstream_tls_insecure: bool,
    /// The largest buffer a tcp/tls byte stream grows to, per direction (starts at
    /// 64 KiB and doubles while reads fill it).
    #[arg(long, default_value_t = 1 << 20)]
    tcp_buffer: usize,
    /// When the kernel runs a worker's io_uring completion work: `interrupt` (the
    /// kernel's default), `coop` or `defer` (batched at the worker's next wait).
    #[arg(long, value_enum, default_value = "defer")]
    io_uring_taskrun: RingTaskRun,
    /// How tcp and tls-passthrough bytes move between plain sockets.
    #[arg(long, value_enum, default_value = "copy")]
    tcp_forwarding: Forwarding,
    /// A MaxMind DB file (GeoLite2/GeoIP2 City or ASN, or a DB-IP lite one) for the
    /// conn.geo.* and conn.client_ip.geo/.as policy variables. Repeatable: a lookup
    /// takes each field from the first file that has it.
    #[arg(long = "geoip-db", value_name = "FILE")]
    geoip_db: Vec<PathBuf>,
    /// Directory of IP category lists, CATEGORY.txt (e.g. proxy.anonymous.tor.txt),
    /// one address or CIDR a line, for conn.client_ip.categories, .is_tor_node and
    /// .is_on_blocklist.
    #[arg(long, value_name = "DIR")]
    ip_categories: Option<PathBuf>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    // Loaded before anything starts, so a bad file stops the process with its name.
    let ip_intel = match IpIntel::load(&args.geoip_db, args.ip_categories.as_deref()) {
        Ok(intel) => Arc::new(intel),
        Err(e) => {
            log::error!("{e}");
            std::process::exit(1);
        }
    };
    let defaults = Config::default();
    let config = Config {
        workers: args.workers.unwrap_or(defaults.workers),
        pin_workers: args.pin_workers,
        bind: args.bind,
        port_map: args.port_map.into_iter().collect(),
        control_socket: args.control_socket,
        takeover: args.takeover,
        state_dir: args.state_dir,
        admin: args.admin,
        access_log: args.access_log,
        drain_timeout: args.drain_timeout,
        max_header_bytes: args.max_header_bytes,
        max_connections_per_worker: args.max_connections_per_worker,
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        body_timeout: args.body_timeout,
        upstream_connect_timeout: args.upstream_connect_timeout,
        upstream_idle_timeout: args.upstream_idle_timeout,
        upstream_read_timeout: args.upstream_read_timeout,
        upstream_keepalive: args.upstream_keepalive,
        tcp_idle_timeout: args.tcp_idle_timeout,
        tunnel: args.tunnel,
        tunnel_cert: args.tunnel_cert,
        tunnel_key: args.tunnel_key,
        tunnel_heartbeat: args.tunnel_heartbeat,
        tunnel_timeout: args.tunnel_timeout,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_cert_dir: args.tls_cert_dir,
        tls_handshake_timeout: args.tls_handshake_timeout,
        upstream_ca: args.upstream_ca,
        upstream_tls_insecure: args.upstream_tls_insecure,
        tcp_buffer: args.tcp_buffer.clamp(4096, 16 << 20),
        tcp_forwarding: args.tcp_forwarding,
        ring_taskrun: args.io_uring_taskrun,
        ip_intel,
        ..defaults
    };
    // Block the shutdown signals before threads start so that every thread inherits
    // the mask and only the main thread takes them, with sigwait.
    let signals = shutdown_signals();
    raise_file_limit();
    let workers = config.workers;
    let drain_timeout = config.drain_timeout;
    let data_plane = match innergate_dataplane::start(config) {
        Ok(dp) => dp,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(1);
        }
    };
    log::info!("data plane running with {workers} workers");
    let signal = loop {
        match wait_for(&signals) {
            libc::SIGHUP => {
                log::info!("SIGHUP: reopening the access log");
                data_plane.reopen_logs();
            }
            signal => break signal,
        }
    };
    log::info!("signal {signal} received; draining (at most {drain_timeout:?})");
    if data_plane.drain(drain_timeout) {
        log::info!("drained; exiting");
    } else {
        log::warn!("drain deadline passed with connections still open; exiting");
    }
    data_plane.remove_control_socket();
    drop(data_plane);
}

/// Raises the open-file limit to the hard limit: every proxied connection takes two
/// descriptors, and the soft default (often 1024) would cap a worker long before
/// --max-connections-per-worker (nginx: worker_rlimit_nofile).
fn raise_file_limit() {
    // SAFETY: getrlimit/setrlimit read and write one plain struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::warn!("cannot raise the open-file limit to {}", limit.rlim_max);
            }
        }
    }
}

fn shutdown_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the calls only write into it and set this
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` is a valid, initialised signal set; sigwait writes one int.
    unsafe { libc::sigwait(set, &mut signal) };
    signal
}
