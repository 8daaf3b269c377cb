//! Scenario 6, connections: many idle keep-alive client connections, each having
//! made one request; the resident memory each costs a system.

use std::time::Duration;

use anyhow::Result;

use super::Bench;
use crate::host::Process;
use crate::load::idle;
use crate::report::{metric, Bound, Sample, ScenarioResult};
use crate::systems::hosts;

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "connections",
        "resident memory per idle keep-alive client connection",
    );
    let systems = b.start_systems("")?;
    let count = if b.opts.quick {
        200
    } else {
        b.opts.idle_connections
    };
    result.notes.push(format!(
        "{count} connections, each after one 100 B request; RSS of the whole process tree (nginx master and workers) before and after."
    ));
    let case = format!("{count} idle");
    // (name, address, process, connections)
    let mut targets: Vec<(&str, std::net::SocketAddr, &Process, usize)> = Vec::new();
    if let Some(n) = &systems.nginx {
        targets.push(("nginx", n.listen.http, &n.process, count));
    }
    if let Some(h) = &systems.haproxy {
        let fits = count.min(h.maxconn - 100);
        if fits < count {
            result.notes.push(format!(
                "HAProxy holds {fits} connections: its maxconn is {} under this machine's open-file limit of {} (it wants two descriptors per connection and refuses to start otherwise).",
                h.maxconn,
                crate::host::file_limit()
            ));
        }
        targets.push(("haproxy", h.listen.http, &h.process, fits));
    }
    let ig = &systems.innergate;
    targets.push(("innergate", ig.listener(80)?, &ig.process, count));
    for rep in 0..b.repetitions() {
        for &(name, addr, process, count) in &targets {
            // Warm up: buffers and pools that any traffic allocates are not per
            // connection.
            drop(idle::open(addr, hosts::AGENT, 64)?);
            std::thread::sleep(Duration::from_millis(200));
            let before = process.rss_kib();
            let held = idle::open(addr, hosts::AGENT, count)?;
            std::thread::sleep(Duration::from_millis(300));
            let after = process.rss_kib();
            drop(held);
            let per_conn = after.saturating_sub(before) as f64 / count as f64;
            b.progress(
                &result.name,
                &case,
                name,
                rep,
                &format!("{per_conn:.2} KiB per connection ({before} → {after} KiB)"),
            );
            result.record(
                &case,
                name,
                Sample::default()
                    .with(metric::KIB_PER_CONN, per_conn)
                    .with(metric::RSS_MIB, after as f64 / 1024.0)
                    .with(metric::ERRORS, 0.0),
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    if let Some(kib) = result.median(&case, "innergate", metric::KIB_PER_CONN) {
        result.check(
            "innergate KiB per idle connection".into(),
            kib,
            Bound::AtMost(4.0),
        );
    }
    result.check_ratio(
        metric::KIB_PER_CONN,
        (&case, "innergate"),
        (&case, "nginx"),
        Bound::AtMost(1.0),
    );
    Ok(result)
}
