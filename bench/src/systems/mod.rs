//! The systems under test, each started with the same worker count on the proxy
//! CPUs and pointed at the same backend: innergate's data plane (tables pushed over
//! its control socket), nginx and HAProxy (configured equivalently: upstream
//! keep-alive on, logging off); for the tunnel scenario, innergate as a whole
//! gateway with control and agents, rathole and bore.

pub mod bore;
pub mod gateway;
pub mod haproxy;
pub mod innergate;
pub mod nginx;
pub mod rathole;

use std::net::SocketAddr;
use std::path::Path;

use crate::backend::Backend;
use crate::certs::Certs;
use crate::host::CpuSet;

/// Host names every system serves (all under the bench certificate's `*.bench.test`).
pub mod hosts {
    /// A public agent endpoint in front of the backend.
    pub const AGENT: &str = "agent.bench.test";
    /// Public cloud endpoint → forward-internal → internal agent endpoint.
    pub const FORWARD: &str = "fwd.bench.test";
    /// Public cloud endpoint → three forward-internal hops → internal agent endpoint.
    pub const CHAIN: &str = "chain.bench.test";
    /// A public agent endpoint with the policy scenario's ten rules.
    pub const POLICY: &str = "policy.bench.test";
    /// The tls passthrough endpoint's SNI.
    pub const BULK: &str = "bulk.bench.test";
    /// A public endpoint an agent serves over a tunnel session.
    pub const TUNNEL: &str = "tunnel.bench.test";
    /// A public endpoint an agent serves over one tunnel session (`--sessions 1`).
    pub const SINGLE: &str = "single.bench.test";
    /// A public endpoint an agent registered with `--direct`.
    pub const DIRECT: &str = "direct.bench.test";
}

/// The tcp endpoint's URL port (mapped to a local port chosen by the OS).
pub const TCP_URL_PORT: u16 = 15432;

/// The tls passthrough endpoint's URL port (https keeps 443).
pub const TLS_URL_PORT: u16 = 8443;

/// The URL port of the tunnel scenario's `--direct` tcp endpoint (its tunnelled one
/// takes [`TCP_URL_PORT`]).
pub const DIRECT_TCP_URL_PORT: u16 = 15433;

/// What every system is started with.
#[derive(Debug)]
pub struct Context<'a> {
    /// Where configuration files and logs go.
    pub dir: &'a Path,
    /// The backend to forward to.
    pub backend: &'a Backend,
    /// The certificate for https and the tls sink.
    pub certs: &'a Certs,
    /// Worker processes / threads of each system.
    pub workers: usize,
    /// Where the systems run.
    pub cpus: Option<&'a CpuSet>,
}

/// Where a peer serves each kind of traffic.
#[derive(Clone, Copy, Debug)]
pub struct Listeners {
    /// Plain HTTP reverse proxy.
    pub http: SocketAddr,
    /// TLS-terminating reverse proxy.
    pub https: SocketAddr,
    /// Plain tcp forwarding to the sink.
    pub tcp: SocketAddr,
    /// tls passthrough by SNI to the TLS sink.
    pub tls: SocketAddr,
}

impl Listeners {
    /// Four free loopback ports.
    pub fn free() -> anyhow::Result<Listeners> {
        let port = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Ok(Listeners {
            http: port(crate::host::free_port()?),
            https: port(crate::host::free_port()?),
            tcp: port(crate::host::free_port()?),
            tls: port(crate::host::free_port()?),
        })
    }
}
