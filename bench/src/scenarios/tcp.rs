//! Scenario 5, tcp: one bulk stream through a tcp endpoint and through a tls
//! passthrough endpoint (routed by SNI, not terminated), beside nginx's stream
//! module, HAProxy in tcp mode (splice) and a direct connection: throughput and the
//! system's CPU seconds per GiB.

use std::net::SocketAddr;

use anyhow::Result;

use super::Bench;
use crate::host::Process;
use crate::load::bulk;
use crate::report::{metric, Bound, Sample, ScenarioResult};
use crate::systems::{hosts, TCP_URL_PORT, TLS_URL_PORT};

const GIB: f64 = (1u64 << 30) as f64;

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "tcp",
        "bulk byte streams through tcp and tls-passthrough endpoints",
    );
    let systems = b.start_systems("")?;
    let bytes = if b.opts.quick {
        16 << 20
    } else {
        b.opts.stream_bytes
    };
    result.notes.push(format!(
        "{:.2} GiB per stream to a counting sink (tls: a rustls sink; the client and the sink encrypt and decrypt on the load CPUs). innergate copies through a buffer growing to 1 MiB; nginx's stream buffer is set to 1 MiB; HAProxy splices (`option splice-auto`).",
        bytes as f64 / GIB
    ));
    let ig = &systems.innergate;
    // (case, target, address, the process whose CPU time counts)
    let mut targets: Vec<(&str, &str, SocketAddr, Option<&Process>)> = Vec::new();
    for (case, direct, url_port) in [
        ("tcp", b.backend.sink, TCP_URL_PORT),
        ("tls passthrough", b.backend.tls_sink, TLS_URL_PORT),
    ] {
        let tls = case != "tcp";
        if !b.opts.quick {
            targets.push((case, "direct", direct, None));
        }
        if let Some(n) = &systems.nginx {
            targets.push((
                case,
                "nginx",
                if tls { n.listen.tls } else { n.listen.tcp },
                Some(&n.process),
            ));
        }
        if let Some(h) = &systems.haproxy {
            targets.push((
                case,
                "haproxy",
                if tls { h.listen.tls } else { h.listen.tcp },
                Some(&h.process),
            ));
        }
        targets.push((case, "innergate", ig.listener(url_port)?, Some(&ig.process)));
    }
    for rep in 0..b.repetitions() {
        for &(case, name, addr, process) in &targets {
            let tls = (case != "tcp").then_some((&b.certs.client, hosts::BULK));
            let cpu_before = process.map(Process::cpu_seconds);
            let elapsed = bulk::send(addr, bytes, tls)?;
            let gbps = bytes as f64 / elapsed.as_secs_f64() / 1e9;
            let mut sample = Sample::default()
                .with(metric::GBPS, gbps)
                .with(metric::ERRORS, 0.0);
            if let (Some(p), Some(before)) = (process, cpu_before) {
                let per_gib = (p.cpu_seconds() - before) / (bytes as f64 / GIB);
                sample = sample.with(metric::CPU_PER_GIB, per_gib);
            }
            b.progress(&result.name, case, name, rep, &format!("{gbps:.2} GB/s"));
            result.record(case, name, sample);
        }
    }
    for case in ["tcp", "tls passthrough"] {
        result.check_ratio(
            metric::GBPS,
            (case, "innergate"),
            (case, "direct"),
            Bound::AtLeast(0.90),
        );
        result.check_ratio(
            metric::GBPS,
            (case, "innergate"),
            (case, "haproxy"),
            Bound::AtLeast(1.0),
        );
    }
    Ok(result)
}
