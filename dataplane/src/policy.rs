//! The traffic-policy executor: runs the phases of an endpoint and of every endpoint a
//! request is forwarded to, in memory, on the worker that read the request.
//!
//! forward-internal is a result of this executor, not I/O: the next endpoint is looked
//! up in the worker's table within the same account, a pool member is picked, and the
//! same parsed request continues through that endpoint's policy (SPEC §5).

use std::net::SocketAddr;

use innergate_table::policy::actions::custom_response::CustomResponse;
use innergate_table::policy::actions::forward_internal::{ForwardInternal, OnError};
use innergate_table::policy::Verdict;
use smallvec::SmallVec;

use crate::error::ProxyError;
use crate::http::head::{HeaderBlock, RequestHead};
use crate::routes::{EndpointIdx, Route, RouteTable, Target};

/// The endpoints a request went through: the public one first, then each
/// forward-internal target.
pub(crate) type Chain = SmallVec<[EndpointIdx; 4]>;

/// The most forward-internal hops one request may take.
pub(crate) const MAX_HOPS: usize = 10;

/// A response the data plane makes without an upstream.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer<'t> {
    /// `custom-response`.
    Custom(&'t CustomResponse),
    /// `deny` with its status.
    Deny(u16),
    /// An error of routing, forwarding or the upstream.
    Error(ProxyError),
}

/// How a request leaves the request phases.
#[derive(Debug)]
pub(crate) enum RequestOutcome<'t> {
    /// Send it to the upstream of the chain's last endpoint.
    Upstream(SocketAddr),
    /// Answer it here. The response phases of `chain[..phases]` run over the answer
    /// (none for errors, which are the data plane's own).
    Answer { answer: Answer<'t>, phases: usize },
}

/// Runs `on_http_request` of `entry` and of every endpoint it forwards to.
pub(crate) fn run_request<'t>(
    table: &'t RouteTable,
    entry: EndpointIdx,
    req: &mut RequestHead,
    chain: &mut Chain,
) -> RequestOutcome<'t> {
    chain.clear();
    chain.push(entry);
    let mut current = table.route(entry);
    'endpoint: loop {
        for rule in &current.policy.on_http_request {
            for action in &rule.actions {
                match action.execute(&mut req.headers) {
                    Verdict::Next => {}
                    Verdict::Respond(custom) => {
                        return RequestOutcome::Answer {
                            answer: Answer::Custom(custom),
                            phases: chain.len(),
                        }
                    }
                    Verdict::Deny(status) => {
                        return RequestOutcome::Answer {
                            answer: Answer::Deny(status),
                            phases: chain.len(),
                        }
                    }
                    Verdict::ForwardInternal(forward) => {
                        match resolve_forward(table, current, forward, chain) {
                            Ok(next) => {
                                chain.push(next);
                                current = table.route(next);
                                continue 'endpoint;
                            }
                            // The error becomes readable by later rules with #4's
                            // expressions; the next action runs.
                            Err(_) if forward.on_error == OnError::Continue => {}
                            Err(error) => {
                                return RequestOutcome::Answer {
                                    answer: Answer::Error(error),
                                    phases: 0,
                                }
                            }
                        }
                    }
                }
            }
        }
        let error = match current.target {
            Target::Upstream(addr) => return RequestOutcome::Upstream(addr),
            Target::None => {
                log::warn!("endpoint {}: its policy did not end a request", current.id);
                ProxyError::PolicyFellThrough
            }
            Target::Unresolved => ProxyError::UpstreamUnresolved,
        };
        return RequestOutcome::Answer {
            answer: Answer::Error(error),
            phases: 0,
        };
    }
}

/// Finds the endpoint a forward-internal lands on, within the forwarder's account.
fn resolve_forward(
    table: &RouteTable,
    from: &Route,
    forward: &ForwardInternal,
    chain: &Chain,
) -> Result<EndpointIdx, ProxyError> {
    if forward.target.scheme.family() != from.url.scheme.family() {
        return Err(ProxyError::ForwardWrongFamily);
    }
    let pool = table
        .internal(from.account, &forward.target)
        .ok_or(ProxyError::ForwardTargetMissing)?;
    // A loop is a return to a URL already visited, whichever pool member served it.
    if chain.iter().any(|&e| table.route(e).pool == pool) {
        return Err(ProxyError::ForwardLoop);
    }
    if chain.len() > MAX_HOPS {
        return Err(ProxyError::ForwardTooManyHops);
    }
    Ok(table.pick(pool))
}

/// Runs `on_http_response` over `chain`, innermost endpoint first. When an action
/// replaces the response, returns it and how many outer endpoints are still to run
/// over the replacement.
pub(crate) fn run_response<'t>(
    table: &'t RouteTable,
    chain: &[EndpointIdx],
    headers: &mut HeaderBlock,
) -> Option<(&'t CustomResponse, usize)> {
    for (position, &idx) in chain.iter().enumerate().rev() {
        for rule in &table.route(idx).policy.on_http_response {
            for action in &rule.actions {
                match action.execute(headers) {
                    Verdict::Respond(custom) => return Some((custom, position)),
                    // Other verdicts cannot occur here: validation keeps deny and
                    // forward-internal out of on_http_response.
                    Verdict::Next | Verdict::Deny(_) | Verdict::ForwardInternal(_) => {}
                }
            }
        }
    }
    None
}
