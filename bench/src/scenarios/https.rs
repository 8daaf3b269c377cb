//! Scenario 4, https: TLS terminated by each proxy in front of the plain backend,
//! keep-alive with small and 64 KiB bodies, and new TLS handshakes per second
//! (`Connection: close`: one full handshake per request).

use anyhow::Result;

use super::Bench;
use crate::report::{metric, Bound, ScenarioResult};
use crate::systems::hosts;

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "https",
        "TLS termination: keep-alive requests and new handshakes per second",
    );
    let systems = b.start_systems("")?;
    let targets = systems.http_targets(b, hosts::AGENT, true, false)?;
    result.notes.push(
        "One ECDSA P-256 certificate for every system; TLS 1.3 as the client and server pick it. `handshakes` sends `Connection: close`, so each request is a new connection with a full handshake.".into(),
    );
    let cases = [
        ("100 B", "/100", false),
        ("64 KiB", "/65536", false),
        ("handshakes", "/100", true),
    ];
    b.saturate_all(&mut result, &cases, &targets)?;
    b.fixed_rate_all(&mut result, "100 B", "/100", &targets)?;
    for peer in ["nginx", "haproxy"] {
        result.check_ratio(
            metric::RPS,
            ("100 B", "innergate"),
            ("100 B", peer),
            Bound::AtLeast(1.25),
        );
        result.check_ratio(
            metric::RPS,
            ("handshakes", "innergate"),
            ("handshakes", peer),
            Bound::AtLeast(1.0),
        );
    }
    Ok(result)
}
