//! Scenario 2, forward-internal: the same requests through a public cloud endpoint
//! that hands them, in memory, to an internal agent endpoint (one hop), and through
//! a chain of three hops, beside the public agent endpoint of scenario 1.

use anyhow::Result;

use super::{Bench, HttpTarget};
use crate::report::{metric, Bound, ScenarioResult};
use crate::systems::hosts;

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "forward-internal",
        "public endpoint → forward-internal (1 and 3 hops) → internal agent endpoint",
    );
    let systems = b.start_systems("")?;
    let addr = systems.innergate.listener(80)?;
    let target = |name, host| HttpTarget {
        name,
        addr,
        host,
        tls: false,
        process: Some(&systems.innergate.process),
    };
    let targets = [
        target("innergate agent (scenario 1)", hosts::AGENT),
        target("innergate 1 hop", hosts::FORWARD),
        target("innergate 3 hops", hosts::CHAIN),
    ];
    b.saturate_all(&mut result, &[("100 B", "/100", false)], &targets)?;
    let base = ("100 B", "innergate agent (scenario 1)");
    result.check_ratio(
        metric::RPS,
        ("100 B", "innergate 1 hop"),
        base,
        Bound::AtLeast(0.97),
    );
    result.check_ratio(
        metric::RPS,
        ("100 B", "innergate 3 hops"),
        base,
        Bound::AtLeast(0.93),
    );
    Ok(result)
}
