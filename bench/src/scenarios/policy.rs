//! Scenario 3, policy: scenario 1 with a realistic traffic policy — ten rules with
//! expressions on path and headers that add headers when they match, and a
//! rate-limit that never trips — beside the same endpoint without a policy.

use anyhow::Result;

use super::{Bench, HttpTarget};
use crate::report::{metric, Bound, ScenarioResult};
use crate::systems::hosts;

/// The policy: the rules of `cargo bench -p innergate-table --bench rules` with
/// their add-headers, after a rate-limit of 2^39 requests a second.
pub const POLICY: &str = r#"on_http_request:
  - name: global limit
    actions:
      - type: rate-limit
        config: {capacity: 549755813888, rate: 1s, bucket_key: ["conn.client_ip"]}
  - expressions: ["req.method == 'POST' && req.url.path == '/login'"]
    actions: [{type: add-headers, config: {headers: {x-login: '1'}}}]
  - expressions: ["req.url.path.startsWith('/admin')"]
    actions: [{type: add-headers, config: {headers: {x-admin: '1'}}}]
  - expressions: ["!('user-agent' in req.headers)"]
    actions: [{type: add-headers, config: {headers: {x-no-agent: '1'}}}]
  - expressions: ["has(req.headers.x_api_version) && req.headers['x-api-version'][0] == '1'"]
    actions: [{type: add-headers, config: {headers: {x-api-v1: '1'}}}]
  - expressions: ["req.host.endsWith('.bench.test')"]
    actions: [{type: add-headers, config: {headers: {x-bench: '1'}}}]
  - expressions: ["req.url.path.matches('^/api/v[0-9]+/legacy/')"]
    actions: [{type: add-headers, config: {headers: {x-legacy: '1'}}}]
  - expressions: ["req.method in ['PUT', 'DELETE', 'PATCH']"]
    actions: [{type: add-headers, config: {headers: {x-write: '1'}}}]
  - expressions: ["req.content_length > 1048576"]
    actions: [{type: add-headers, config: {headers: {x-large: '1'}}}]
  - expressions: ["has(req.headers.x_debug)"]
    actions: [{type: add-headers, config: {headers: {x-debug-seen: '1'}}}]
  - expressions: ["req.url.path == '/' && req.method == 'GET'"]
    actions: [{type: add-headers, config: {headers: {x-root: '1'}}}]
"#;

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "policy",
        "public agent endpoint with 10 rules, add-headers and a rate-limit",
    );
    let systems = b.start_systems(POLICY)?;
    let addr = systems.innergate.listener(80)?;
    let targets = [
        HttpTarget {
            name: "innergate, no policy",
            addr,
            host: hosts::AGENT,
            tls: false,
            process: Some(&systems.innergate.process),
        },
        HttpTarget {
            name: "innergate, policy",
            addr,
            host: hosts::POLICY,
            tls: false,
            process: Some(&systems.innergate.process),
        },
    ];
    b.saturate_all(&mut result, &[("100 B", "/100", false)], &targets)?;
    result.check_ratio(
        metric::RPS,
        ("100 B", "innergate, policy"),
        ("100 B", "innergate, no policy"),
        Bound::AtLeast(0.90),
    );
    Ok(result)
}
