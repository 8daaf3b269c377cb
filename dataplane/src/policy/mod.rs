//! The traffic-policy executor: runs the phases of an endpoint and of every endpoint a
//! request is forwarded to, in memory, on the worker that read the request.
//!
//! The executor only continues, responds, closes or forwards: each action decides
//! which, and builds its own answer ([`innergate_table::policy::Verdict`]).
//! forward-internal is a result, not I/O: the next endpoint is looked up in the
//! worker's table within the same account, a pool member is picked, and the same
//! parsed request continues through that endpoint's policy (SPEC §5).
//!
//! What the phases read lives in [`facts`]; what they keep, per connection and per
//! request, in [`state`].

mod facts;
pub(crate) mod state;

use innergate_table::policy::actions::Exchange;
use innergate_table::policy::{
    Action, ActionId, Facts, ForwardTarget, LocalResponse, Phase, Verdict,
};

use facts::{NoHeaders, OnConnect, OnHttp};
pub(crate) use state::{Admission, ConnInfo, ConnState, RequestState};

use crate::error::ProxyError;
use crate::http::head::{RequestHead, ResponseHead};
use crate::routes::{EndpointIdx, Route, RouteTable, Target};
use crate::upstream::Upstream;

/// The most forward-internal hops one request may take.
pub(crate) const MAX_HOPS: usize = 10;

/// What one request tells expressions besides its head.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestInfo<'a> {
    pub(crate) conn: &'a ConnInfo,
    /// `http` or `https`, as the client connected.
    pub(crate) scheme: &'static str,
    /// The Host, lowercased, without port.
    pub(crate) host: &'a str,
    /// -1 when the length is not known in advance (chunked).
    pub(crate) content_length: i64,
}

/// How a request leaves the request phases.
#[derive(Debug)]
pub(crate) enum RequestOutcome<'t> {
    /// Send it to the upstream of the chain's last endpoint (borrowed from the table:
    /// nothing is cloned per request).
    Upstream(&'t Upstream),
    /// Answer with what an action made; the response phases of the chain run over it.
    Respond(LocalResponse<'t>),
    /// Answer with the data plane's own error (no response phase runs over it).
    Fail(ProxyError),
    /// Close the client connection without an answer.
    Close,
}

/// Runs `on_http_request` of the chain's first endpoint and of every endpoint it
/// forwards to; `state` was started at the entry.
pub(crate) fn run_request<'t>(
    table: &'t RouteTable,
    req: &mut RequestHead,
    info: RequestInfo<'_>,
    state: &mut RequestState,
) -> RequestOutcome<'t> {
    let mut current = table.route(state.chain[0]);
    'endpoint: loop {
        for (r, rule) in current.policy.on_http_request.iter().enumerate() {
            let mut x = OnHttp {
                req: &mut *req,
                resp: None,
                info,
                route: current,
                vars: &mut state.vars,
                results: &mut state.results,
                forward_error: state.forward_error,
                action: ActionId::new(Phase::HttpRequest, r, 0),
            };
            if !rule.applies(&x) {
                continue;
            }
            for (a, action) in rule.actions.iter().enumerate() {
                x.action = ActionId::new(Phase::HttpRequest, r, a);
                match action.execute(&mut x) {
                    Verdict::Continue => {}
                    Verdict::Respond(response) => return RequestOutcome::Respond(response),
                    Verdict::Close => return RequestOutcome::Close,
                    Verdict::Forward(forward) => {
                        match follow(table, current, forward, &x, &mut state.chain) {
                            Ok(next) => {
                                current = next;
                                continue 'endpoint;
                            }
                            Err(error) if forward.continues_on_error() => {
                                // Later actions and rules read it as
                                // actions.ngrok.forward_internal.*.
                                x.forward_error = Some(error);
                                state.forward_error = Some(error);
                                record_forward_url(&mut x, forward);
                            }
                            Err(error) => {
                                // Counted as a forward-internal failure.
                                state.forward_error = Some(error);
                                return RequestOutcome::Fail(error);
                            }
                        }
                    }
                }
            }
        }
        return match current.target {
            Target::Upstream(ref upstream) => RequestOutcome::Upstream(upstream),
            Target::None => {
                log::warn!("endpoint {}: its policy did not end a request", current.id);
                RequestOutcome::Fail(ProxyError::PolicyFellThrough)
            }
            Target::Unresolved => RequestOutcome::Fail(ProxyError::UpstreamUnresolved),
        };
    }
}

/// How a connection leaves `on_tcp_connect`.
#[derive(Debug)]
pub(crate) enum ConnectOutcome {
    /// Go on: for tcp and tls, to the target of the chain's last endpoint, ending TLS
    /// first where a terminate-tls ran (endpoint, action); for http, to its requests.
    Proceed {
        target: Target,
        terminate: Option<(EndpointIdx, ActionId)>,
    },
    /// Close the connection; the error or refusal code says why, where there is one.
    Close(Option<&'static str>),
}

/// Runs `on_tcp_connect` of `entry` and, for tcp/tls, of every endpoint it forwards
/// to (a pool member is picked per connection).
pub(crate) fn run_connect(
    table: &RouteTable,
    entry: EndpointIdx,
    conn: &ConnInfo,
    state: &mut RequestState,
) -> ConnectOutcome {
    state.start(entry, None);
    let mut current_idx = entry;
    let mut current = table.route(entry);
    let mut terminate = None;
    'endpoint: loop {
        for (r, rule) in current.policy.on_tcp_connect.iter().enumerate() {
            let mut x = OnConnect {
                conn,
                endpoint: current_idx,
                route: current,
                vars: &mut state.vars,
                results: &mut state.results,
                forward_error: state.forward_error,
                none: NoHeaders,
                action: ActionId::new(Phase::TcpConnect, r, 0),
                terminate: &mut terminate,
            };
            if !rule.applies(&x) {
                continue;
            }
            for (a, action) in rule.actions.iter().enumerate() {
                x.action = ActionId::new(Phase::TcpConnect, r, a);
                match action.execute(&mut x) {
                    Verdict::Continue => {}
                    // A refusal before any request closes the connection.
                    Verdict::Respond(refusal) => {
                        return ConnectOutcome::Close(refusal.error_code().map(code_of))
                    }
                    Verdict::Close => return ConnectOutcome::Close(None),
                    Verdict::Forward(forward) => {
                        match follow(table, current, forward, &x, &mut state.chain) {
                            Ok(next) => {
                                current_idx = *state.chain.last().expect("follow pushed it");
                                current = next;
                                continue 'endpoint;
                            }
                            Err(error) if forward.continues_on_error() => {
                                x.forward_error = Some(error);
                                state.forward_error = Some(error);
                                record_forward_url(&mut x, forward);
                            }
                            Err(error) => return ConnectOutcome::Close(Some(error.code())),
                        }
                    }
                }
            }
        }
        return ConnectOutcome::Proceed {
            target: current.target.clone(),
            terminate,
        };
    }
}

/// The terminate-tls whose settings shape the handshake of an https connection to
/// `entry`: the first in a rule of its `on_tcp_connect` whose expressions hold on
/// what is known before the handshake (the client's address, the SNI; `conn.tls.*`
/// beyond it reads empty then). The phase itself runs before the endpoint's first
/// request, as on every http connection, with the handshake's facts; that
/// terminate-tls then has nothing left to do.
pub(crate) fn handshake_termination(
    table: &RouteTable,
    entry: EndpointIdx,
    conn: &ConnInfo,
) -> Option<ActionId> {
    let route = table.route(entry);
    let (mut vars, mut results, mut terminate) = Default::default();
    for (r, rule) in route.policy.on_tcp_connect.iter().enumerate() {
        let x = OnConnect {
            conn,
            endpoint: entry,
            route,
            vars: &mut vars,
            results: &mut results,
            forward_error: None,
            none: NoHeaders,
            action: ActionId::new(Phase::TcpConnect, r, 0),
            terminate: &mut terminate,
        };
        if !rule.applies(&x) {
            continue;
        }
        if let Some(a) = rule
            .actions
            .iter()
            .position(|action| matches!(action, Action::TerminateTls(_)))
        {
            return Some(ActionId::new(Phase::TcpConnect, r, a));
        }
    }
    None
}

/// Records the target a failed forward tried (`actions.ngrok.forward_internal.url`);
/// empty when it did not render to an internal URL.
fn record_forward_url(x: &mut dyn Exchange, forward: &dyn ForwardTarget) {
    let url = forward
        .target(x.facts())
        .map_or_else(String::new, |u| u.to_string());
    if let Some(results) = x.results() {
        results.forward_url = url;
    }
}

/// The refusal codes of the actions that may refuse in on_tcp_connect, as `'static`
/// text for the connection's log line.
fn code_of(code: &str) -> &'static str {
    use innergate_table::policy::actions::{deny, restrict_ips};
    [deny::DENIED, restrict_ips::REFUSED]
        .into_iter()
        .find(|c| *c == code)
        .unwrap_or("")
}

/// Finds the endpoint a forward-internal lands on, within the forwarder's account,
/// and appends it to the chain.
fn follow<'t>(
    table: &'t RouteTable,
    from: &Route,
    forward: &dyn ForwardTarget,
    facts: &dyn Facts,
    chain: &mut state::Chain,
) -> Result<&'t Route, ProxyError> {
    let target = forward
        .target(facts)
        .ok_or(ProxyError::ForwardInvalidTarget)?;
    if target.scheme.family() != from.url.scheme.family() {
        return Err(ProxyError::ForwardWrongFamily);
    }
    let pool = table
        .internal(from.account, &target)
        .ok_or(ProxyError::ForwardTargetMissing)?;
    // A loop is a return to a URL already visited, whichever pool member served it.
    if chain.iter().any(|&e| table.route(e).pool == pool) {
        return Err(ProxyError::ForwardLoop);
    }
    if chain.len() > MAX_HOPS {
        return Err(ProxyError::ForwardTooManyHops);
    }
    let next = table.pick(pool);
    chain.push(next);
    Ok(table.route(next))
}

/// Runs `on_http_response` over `chain[..phases]`, innermost endpoint first. When an
/// action replaces the response, returns the replacement and how many outer endpoints
/// are still to run over it.
pub(crate) fn run_response<'t>(
    table: &'t RouteTable,
    state: &mut RequestState,
    phases: usize,
    req: &mut RequestHead,
    resp: &mut ResponseHead,
    info: RequestInfo<'_>,
) -> Option<(LocalResponse<'t>, usize)> {
    for (position, &idx) in state.chain[..phases].iter().enumerate().rev() {
        let route = table.route(idx);
        for (r, rule) in route.policy.on_http_response.iter().enumerate() {
            let mut x = OnHttp {
                req: &mut *req,
                resp: Some(&mut *resp),
                info,
                route,
                vars: &mut state.vars,
                results: &mut state.results,
                forward_error: state.forward_error,
                action: ActionId::new(Phase::HttpResponse, r, 0),
            };
            if !rule.applies(&x) {
                continue;
            }
            for action in &rule.actions {
                // Only custom-response ends this phase: validation keeps the other
                // ending actions out of on_http_response.
                if let Verdict::Respond(replacement) = action.execute(&mut x) {
                    return Some((replacement, position));
                }
            }
        }
    }
    None
}
