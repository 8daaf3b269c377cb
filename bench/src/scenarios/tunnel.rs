//! Scenario 8, tunnel: scenario 1's requests (100 B and 64 KiB bodies) and a tcp bulk
//! stream through an agent tunnel — the agent dials the data plane's tunnel listener,
//! binds its endpoint through control, and relays each stream the data plane opens to
//! the backend — beside the same backend behind a `--direct` endpoint (the data plane
//! dials it), and beside rathole and bore, whose tcp tunnels the same loads cross.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{Bench, HttpTarget};
use crate::certs::TunnelCerts;
use crate::host::{find_program, program_output, CpuTime};
use crate::load::{bulk, idle};
use crate::report::{metric, Bound, Sample, ScenarioResult};
use crate::systems::bore::{self, Bore};
use crate::systems::gateway::{Gateway, Reach};
use crate::systems::rathole::{self, Rathole, Transport};
use crate::systems::{hosts, innergate, DIRECT_TCP_URL_PORT, TCP_URL_PORT};

const GIB: f64 = (1u64 << 30) as f64;

/// The agent endpoint served over a tunnel session.
const TUNNEL: &str = "innergate tunnel";
/// The agent endpoint registered with `--direct`.
const DIRECT: &str = "innergate --direct";
/// The agent endpoint over one session, whose requests other workers hand over.
const SINGLE: &str = "innergate tunnel, 1 session";

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "tunnel",
        "http and a tcp bulk stream through an agent tunnel, beside a --direct endpoint, rathole and bore",
    );
    let certs = TunnelCerts::create(&b.dir)?;
    let ig = Innergate::start(b, &certs)?;
    let peers = if b.opts.quick {
        Peers::default()
    } else {
        Peers::start(b, &certs, &mut result.notes)?
    };
    result.notes.push(format!(
        "innergate: the data plane ({} worker(s)) with its tunnel listener, control (`innergate serve`) and four agents — http and tcp over a tunnel session (TLS, muxado streams), http and tcp with `--direct`. CPU counts every one of these processes for both innergate rows, idle ones included; rathole: its server and client; bore: its server and both `bore local` clients. Every process of every system runs on the proxy CPUs, both halves of each tunnel included.",
        b.opts.workers
    ));
    if b.opts.workers > 1 {
        result.notes.push(format!(
            "`{SINGLE}`: the http endpoint of an agent with `--sessions 1`, as the hosted service's SDKs connect: the requests that the other {} worker(s) accept are handed over to the session's worker (an in-process channel and a wakeup each way). The hand-over's cost per handed-over request is (its µs/request − `{TUNNEL}`'s) × {}/{}.",
            b.opts.workers - 1,
            b.opts.workers,
            b.opts.workers - 1
        ));
    }
    result.notes.push(
        "rathole and bore are tcp tunnels: wrk's connections cross them to the backend as byte streams, one tunnel connection (data channel) per client connection; innergate parses HTTP at the data plane and carries each request on a stream of the one TLS session, reused across requests. `rathole` uses its default tcp transport (unencrypted), `rathole tls` its TLS transport (OpenSSL); bore is unencrypted; innergate's tunnel is always TLS (rustls). `direct`: the client straight to the backend.".into(),
    );

    let mut systems = Vec::new();
    if !b.opts.quick {
        systems.push(System {
            name: "direct",
            http: b.backend.http,
            host: hosts::TUNNEL,
            bulk: Some(b.backend.sink),
            cpu: None,
        });
    }
    systems.extend(ig.systems());
    systems.extend(peers.systems());

    let targets: Vec<HttpTarget> = systems
        .iter()
        .map(|s| HttpTarget {
            name: s.name,
            addr: s.http,
            host: s.host,
            tls: false,
            process: s.cpu,
        })
        .collect();
    let cases = [("100 B", "/100", false), ("64 KiB", "/65536", false)];
    b.saturate_all(&mut result, &cases, &targets)?;
    b.fixed_rate_all(&mut result, "100 B", "/100", &targets)?;
    bulk_all(b, &mut result, &systems)?;

    for case in ["100 B", "64 KiB"] {
        result.check_ratio(
            metric::RPS,
            (case, TUNNEL),
            (case, DIRECT),
            Bound::AtLeast(0.8),
        );
    }
    result.check_ratio(
        metric::GBPS,
        ("tcp", TUNNEL),
        ("tcp", "rathole"),
        Bound::AtLeast(1.0),
    );
    result.check_ratio(
        metric::CPU_PER_GIB,
        ("tcp", TUNNEL),
        ("tcp", "rathole"),
        Bound::AtMost(1.0),
    );
    Ok(result)
}

/// One system of the comparison: where its http and tcp services are, and whose CPU
/// time counts.
struct System<'a> {
    name: &'a str,
    /// In front of the backend's HTTP server.
    http: SocketAddr,
    /// The Host header its http service wants.
    host: &'a str,
    /// In front of the sink, if the system has a tcp endpoint.
    bulk: Option<SocketAddr>,
    /// Every process of the system (none for direct).
    cpu: Option<&'a dyn CpuTime>,
}

/// A bulk stream through every system, repetitions interleaved: throughput and CPU
/// seconds per GiB.
fn bulk_all(b: &Bench, result: &mut ScenarioResult, systems: &[System]) -> Result<()> {
    let bytes = if b.opts.quick {
        16 << 20
    } else {
        b.opts.stream_bytes
    };
    result.notes.push(format!(
        "tcp: {:.2} GiB per stream to the counting sink.",
        bytes as f64 / GIB
    ));
    for rep in 0..b.repetitions() {
        for s in systems {
            let Some(sink) = s.bulk else {
                continue;
            };
            let cpu_before = s.cpu.map(CpuTime::cpu_seconds);
            let elapsed = bulk::send(sink, bytes, None)?;
            let gbps = bytes as f64 / elapsed.as_secs_f64() / 1e9;
            let mut sample = Sample::default()
                .with(metric::GBPS, gbps)
                .with(metric::ERRORS, 0.0);
            if let (Some(p), Some(before)) = (s.cpu, cpu_before) {
                let per_gib = (p.cpu_seconds() - before) / (bytes as f64 / GIB);
                sample = sample.with(metric::CPU_PER_GIB, per_gib);
            }
            b.progress(&result.name, "tcp", s.name, rep, &format!("{gbps:.2} GB/s"));
            result.record("tcp", s.name, sample);
        }
    }
    Ok(())
}

// === innergate ===

/// The gateway with its four agents, and where it serves them.
struct Innergate {
    gateway: Gateway,
    /// The http endpoints (`TUNNEL` and `DIRECT` by host).
    http: SocketAddr,
    /// The tcp endpoint over a tunnel session.
    tunnel_tcp: SocketAddr,
    /// The `--direct` tcp endpoint.
    direct_tcp: SocketAddr,
    /// Whether an http endpoint over one session runs too (with two workers or more).
    single: bool,
}

impl Innergate {
    /// Starts the gateway and binds an http and a tcp endpoint over a tunnel and with
    /// `--direct`; returns once all four answer.
    fn start(b: &Bench, certs: &TunnelCerts) -> Result<Innergate> {
        let mut extra: Vec<String> = b.opts.dataplane_args.clone();
        extra.extend(["--port-map".into(), format!("{DIRECT_TCP_URL_PORT}=0")]);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let control = innergate::control_binary()?;
        let mut gateway = Gateway::start(&b.context(), &b.dataplane, &control, certs, &extra)?;
        let (http, sink) = (b.backend.http, b.backend.sink);
        let tcp_url = |port: u16| format!("tcp://{}:{port}", hosts::BULK);
        for (reach, host) in [
            (Reach::Tunnel, hosts::TUNNEL),
            (Reach::Direct, hosts::DIRECT),
        ] {
            gateway.agent("http", http, &format!("http://{host}"), reach)?;
        }
        let single = b.opts.workers > 1;
        if single {
            gateway.agent(
                "http",
                http,
                &format!("http://{}", hosts::SINGLE),
                Reach::SingleSession,
            )?;
        }
        gateway.agent("tcp", sink, &tcp_url(TCP_URL_PORT), Reach::Tunnel)?;
        gateway.agent("tcp", sink, &tcp_url(DIRECT_TCP_URL_PORT), Reach::Direct)?;
        let ig = Innergate {
            http: gateway.listener(80)?,
            tunnel_tcp: gateway.listener(TCP_URL_PORT)?,
            direct_tcp: gateway.listener(DIRECT_TCP_URL_PORT)?,
            single,
            gateway,
        };
        for host in [hosts::TUNNEL, hosts::DIRECT]
            .into_iter()
            .chain(single.then_some(hosts::SINGLE))
        {
            serving("an http endpoint", || idle::open(ig.http, host, 1).is_ok())?;
        }
        for addr in [ig.tunnel_tcp, ig.direct_tcp] {
            serving("a tcp endpoint", || bulk::send(addr, 1, None).is_ok())?;
        }
        Ok(ig)
    }

    fn systems(&self) -> Vec<System<'_>> {
        let mut systems = vec![
            System {
                name: TUNNEL,
                http: self.http,
                host: hosts::TUNNEL,
                bulk: Some(self.tunnel_tcp),
                cpu: Some(&self.gateway),
            },
            System {
                name: DIRECT,
                http: self.http,
                host: hosts::DIRECT,
                bulk: Some(self.direct_tcp),
                cpu: Some(&self.gateway),
            },
        ];
        if self.single {
            systems.push(System {
                name: SINGLE,
                http: self.http,
                host: hosts::SINGLE,
                bulk: None,
                cpu: Some(&self.gateway),
            });
        }
        systems
    }
}

// === the peers ===

/// rathole over each transport that started, and bore where it is installed.
#[derive(Default)]
struct Peers {
    rathole: Vec<(&'static str, Rathole)>,
    bore: Option<Bore>,
}

impl Peers {
    /// Starts rathole (required) over its tcp transport and, where it starts, its TLS
    /// transport, and bore where it is installed; says in `notes` what was left out
    /// and why, and the versions. Returns once every tunnel answers.
    fn start(b: &Bench, certs: &TunnelCerts, notes: &mut Vec<String>) -> Result<Peers> {
        let cx = b.context();
        let Some(rathole_bin) = find_program("rathole") else {
            bail!("the tunnel scenario needs rathole: run scripts/bench-deps.sh (cargo install rathole)");
        };
        let mut versions = vec![rathole_version(&rathole_bin)];
        let mut peers = Peers::default();
        let plain = rathole::start(&cx, &rathole_bin, Transport::Tcp, certs)?;
        peers.rathole.push(("rathole", plain));
        match rathole::start(&cx, &rathole_bin, Transport::Tls, certs) {
            Ok(r) => peers.rathole.push(("rathole tls", r)),
            Err(e) => notes.push(format!("rathole tls not measured: {e:#}")),
        }
        match find_program("bore") {
            None => notes.push(
                "bore not measured: not installed (scripts/bench-deps.sh installs bore-cli where it builds).".into(),
            ),
            Some(bore_bin) => match bore::start(&cx, &bore_bin) {
                Ok(started) => {
                    let version = program_output(&bore_bin, &["--version"]);
                    versions.push(version.lines().next().unwrap_or("bore").trim().into());
                    peers.bore = Some(started);
                }
                Err(e) => notes.push(format!("bore not measured: {e:#}")),
            },
        }
        notes.push(format!("Peers: {}.", versions.join(", ")));
        for s in peers.systems() {
            serving("a peer's tunnel", || idle::open(s.http, s.host, 1).is_ok())?;
        }
        Ok(peers)
    }

    fn systems(&self) -> Vec<System<'_>> {
        let rathole = self.rathole.iter().map(|(name, r)| System {
            name,
            http: r.http,
            host: hosts::TUNNEL,
            bulk: Some(r.bulk),
            cpu: Some(r as &dyn CpuTime),
        });
        let bore = self.bore.iter().map(|bore| System {
            name: "bore",
            http: bore.http,
            host: hosts::TUNNEL,
            bulk: Some(bore.bulk),
            cpu: Some(bore as &dyn CpuTime),
        });
        rathole.chain(bore).collect()
    }
}

/// `rathole 0.5.0`, from `rathole --version`'s `Build Version:` line.
fn rathole_version(binary: &Path) -> String {
    let out = program_output(binary, &["--version"]);
    let version = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build Version:"))
        .map_or("(version unknown)", str::trim);
    format!("rathole {version}")
}

/// Waits until `ready` holds: an endpoint answers once its table reached the data
/// plane, a peer's tunnel once its client registered.
fn serving(what: &str, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not start serving");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
