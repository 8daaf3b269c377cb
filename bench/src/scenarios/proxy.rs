//! Scenario 1, http-proxy: HTTP/1.1 keep-alive GETs of 100 B, 4 KiB, 16 KiB and
//! 64 KiB bodies through a public agent endpoint, beside nginx, HAProxy and the
//! backend itself; then the small body at a fixed rate.

use anyhow::Result;

use super::Bench;
use crate::report::{metric, Bound, ScenarioResult};
use crate::systems::hosts;

/// Body sizes, as (case, path).
const SIZES: [(&str, &str); 4] = [
    ("100 B", "/100"),
    ("4 KiB", "/4096"),
    ("16 KiB", "/16384"),
    ("64 KiB", "/65536"),
];

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "http-proxy",
        "HTTP/1.1 keep-alive GET through a public agent endpoint",
    );
    let systems = b.start_systems("")?;
    let targets = systems.http_targets(b, hosts::AGENT, false, true)?;
    let cases: Vec<(&str, &str, bool)> = SIZES.iter().map(|&(c, p)| (c, p, false)).collect();
    result.notes.push(format!(
        "Saturation: wrk, {} connections, {} thread(s); the same backend for every target.",
        b.opts.connections, b.opts.load_threads
    ));
    b.saturate_all(&mut result, &cases, &targets)?;
    b.fixed_rate_all(&mut result, "100 B", "/100", &targets)?;

    let small = "100 B";
    for peer in ["nginx", "haproxy"] {
        result.check_ratio(
            metric::RPS,
            (small, "innergate"),
            (small, peer),
            Bound::AtLeast(1.25),
        );
    }
    result.check_ratio(
        metric::P99,
        (small, "innergate"),
        (small, "nginx"),
        Bound::AtMost(1.0),
    );
    result.check_ratio(
        metric::RPS,
        (small, "innergate"),
        (small, "direct"),
        Bound::AtLeast(0.60),
    );
    Ok(result)
}
