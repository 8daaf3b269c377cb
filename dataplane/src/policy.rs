//! The traffic-policy executor: runs the phases of an endpoint and of every endpoint a
//! request is forwarded to, in memory, on the worker that read the request.
//!
//! forward-internal is a result of this executor, not I/O: the next endpoint is looked
//! up in the worker's table within the same account, a pool member is picked, and the
//! same parsed request continues through that endpoint's policy (SPEC §5).
//!
//! Rules read the exchange through [`Facts`], implemented here over the parsed heads
//! and the connection; strings are borrowed from the heads, never copied.

use innergate_table::policy::actions::custom_response::CustomResponse;
use innergate_table::policy::actions::forward_internal::{ForwardInternal, OnError};
use innergate_table::policy::actions::{Exchange, HeadersMut};
use innergate_table::policy::expr::{MapVar, Template, Var};
use innergate_table::policy::{Facts, Verdict};
use smallvec::SmallVec;

use crate::error::ProxyError;
use crate::http::head::{HeaderBlock, RequestHead, ResponseHead};
use crate::routes::{EndpointIdx, Route, RouteTable, Target};
use crate::upstream::UpstreamAddr;

/// The endpoints a request went through: the public one first, then each
/// forward-internal target.
pub(crate) type Chain = SmallVec<[EndpointIdx; 4]>;

/// The most forward-internal hops one request may take.
pub(crate) const MAX_HOPS: usize = 10;

/// What a connection tells expressions, computed once per connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// The worker serving it (its slots in rate-limit counters).
    pub(crate) worker: usize,
    /// `http` or `https`, as the client connected.
    pub(crate) scheme: &'static str,
    /// The SNI the client sent, for `conn.tls.sni`.
    pub(crate) sni: Option<String>,
    pub(crate) client_ip: String,
    pub(crate) client_port: u16,
    pub(crate) server_port: u16,
}

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

/// `vars.*` of one request, set by `set-vars`.
#[derive(Debug, Default)]
pub(crate) struct Vars(SmallVec<[(String, String); 4]>);

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}

/// What the phases of one request keep between them.
#[derive(Debug, Default)]
pub(crate) struct ExchangeState {
    pub(crate) chain: Chain,
    pub(crate) vars: Vars,
    /// The last forward-internal failure that an `on_error: continue` let through.
    pub(crate) forward_error: Option<ProxyError>,
    /// A `terminate-tls` that ran in on_tcp_connect: (endpoint, action address).
    pub(crate) terminate: Option<(EndpointIdx, usize)>,
}

impl ExchangeState {
    pub(crate) fn reset(&mut self) {
        self.chain.clear();
        self.vars.0.clear();
        self.forward_error = None;
        self.terminate = None;
    }
}

/// A response the data plane makes without an upstream.
#[derive(Clone, Debug)]
pub(crate) enum Answer<'t> {
    /// `custom-response`, rendered for the endpoint that ran it.
    Custom(&'t CustomResponse, &'t Route),
    /// `redirect`: status, Location, extra headers rendered for the endpoint.
    Redirect(u16, String, &'t [(String, Template)], &'t Route),
    /// `basic-auth` refused: 401 with this realm.
    Unauthorized(&'t str),
    /// `rate-limit` refused: 429 with Retry-After seconds.
    RateLimited(u64),
    /// `deny` with its status.
    Deny(u16),
    /// An error of routing, forwarding or the upstream.
    Error(ProxyError),
}

/// How a request leaves the request phases.
#[derive(Debug)]
pub(crate) enum RequestOutcome<'t> {
    /// Send it to the upstream of the chain's last endpoint.
    Upstream(UpstreamAddr),
    /// Answer it here. The response phases of `chain[..phases]` run over the answer
    /// (none for errors, which are the data plane's own).
    Answer { answer: Answer<'t>, phases: usize },
    /// Close the client connection without an answer.
    Close,
}

/// Everything a fact can come from, borrowed for one lookup.
#[derive(Clone, Copy)]
pub(crate) struct View<'s> {
    pub(crate) req: &'s RequestHead,
    pub(crate) resp: Option<&'s ResponseHead>,
    pub(crate) info: RequestInfo<'s>,
    pub(crate) route: &'s Route,
    pub(crate) vars: &'s Vars,
    pub(crate) forward_error: Option<ProxyError>,
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn header_values<'s, 'k>(
    block: &'s HeaderBlock,
    key: &'k str,
) -> impl Iterator<Item = &'s str> + use<'s, 'k> {
    block.get_all(key).map(text)
}

fn query_values<'s, 'k>(
    query: &'s str,
    key: &'k str,
) -> impl Iterator<Item = &'s str> + use<'s, 'k> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
}

impl<'s> View<'s> {
    fn path_and_query(self) -> (&'s str, &'s str) {
        let target = text(self.req.target());
        target.split_once('?').unwrap_or((target, ""))
    }

    fn string(self, var: Var) -> &'s str {
        match var {
            Var::Method => text(self.req.method()),
            Var::Scheme => self.info.scheme,
            Var::Host => self.info.host,
            Var::Path => self.path_and_query().0,
            Var::Query => self.path_and_query().1,
            Var::Version => {
                if self.req.minor_version == 0 {
                    "1.0"
                } else {
                    "1.1"
                }
            }
            Var::ClientIp => &self.info.conn.client_ip,
            Var::TlsSni => self.info.conn.sni.as_deref().unwrap_or(""),
            Var::EndpointId => &self.route.id,
            Var::EndpointUrl => &self.route.url_text,
            Var::EndpointHost => &self.route.host_text,
            Var::EndpointProtocol => self.route.url.scheme.as_str(),
            Var::ForwardErrorCode => self.forward_error.map_or("", ProxyError::code),
            Var::ForwardErrorMessage => self.forward_error.map_or("", ProxyError::message),
            // No TLS yet (issue #5); integer variables never come here.
            _ => "",
        }
    }

    fn int(self, var: Var) -> i64 {
        match var {
            Var::ContentLength => self.info.content_length,
            Var::StatusCode => self.resp.map_or(0, |r| i64::from(r.status)),
            Var::ClientPort => i64::from(self.info.conn.client_port),
            Var::ServerPort => i64::from(self.info.conn.server_port),
            _ => 0,
        }
    }

    fn count(self, map: MapVar, key: &str) -> usize {
        match map {
            MapVar::RequestHeaders => self.req.headers.get_all(key).count(),
            MapVar::ResponseHeaders => self.resp.map_or(0, |r| r.headers.get_all(key).count()),
            MapVar::QueryParams => query_values(self.path_and_query().1, key).count(),
        }
    }

    fn value(self, map: MapVar, key: &str, index: usize) -> Option<&'s str> {
        match map {
            MapVar::RequestHeaders => header_values(&self.req.headers, key).nth(index),
            MapVar::ResponseHeaders => self
                .resp
                .and_then(|r| header_values(&r.headers, key).nth(index)),
            MapVar::QueryParams => query_values(self.path_and_query().1, key).nth(index),
        }
    }

    fn map_size(self, map: MapVar) -> usize {
        match map {
            MapVar::RequestHeaders => self.req.headers.iter().count(),
            MapVar::ResponseHeaders => self.resp.map_or(0, |r| r.headers.iter().count()),
            MapVar::QueryParams => self
                .path_and_query()
                .1
                .split('&')
                .filter(|p| !p.is_empty())
                .count(),
        }
    }

    fn user_var(self, name: &str) -> Option<&'s str> {
        self.vars.get(name)
    }
}

/// Facts through a value that can lend a [`View`]: each answer borrows from it.
macro_rules! facts_via_view {
    ($ty:ty) => {
        impl Facts for $ty {
            fn string(&self, var: Var) -> &str {
                self.view().string(var)
            }
            fn int(&self, var: Var) -> i64 {
                self.view().int(var)
            }
            fn count(&self, map: MapVar, key: &str) -> usize {
                self.view().count(map, key)
            }
            fn value(&self, map: MapVar, key: &str, index: usize) -> Option<&str> {
                self.view().value(map, key, index)
            }
            fn map_size(&self, map: MapVar) -> usize {
                self.view().map_size(map)
            }
            fn user_var(&self, name: &str) -> Option<&str> {
                self.view().user_var(name)
            }
        }
    };
}

impl View<'_> {
    fn view(&self) -> View<'_> {
        *self
    }
}

facts_via_view!(View<'_>);
facts_via_view!(OnRequest<'_>);
facts_via_view!(OnResponse<'_>);

/// The request phase's exchange: reads everything, edits request headers.
struct OnRequest<'s> {
    req: &'s mut RequestHead,
    info: RequestInfo<'s>,
    route: &'s Route,
    vars: &'s mut Vars,
    forward_error: Option<ProxyError>,
}

impl OnRequest<'_> {
    fn view(&self) -> View<'_> {
        View {
            req: self.req,
            resp: None,
            info: self.info,
            route: self.route,
            vars: self.vars,
            forward_error: self.forward_error,
        }
    }
}

impl Exchange for OnRequest<'_> {
    fn facts(&self) -> &dyn Facts {
        self
    }
    fn headers(&mut self) -> &mut dyn HeadersMut {
        &mut self.req.headers
    }
    fn set_var(&mut self, name: &str, value: String) {
        self.vars.set(name, value);
    }
    fn set_target(&mut self, target: &str) {
        self.req.set_target(target);
    }
    fn log(&mut self, line: String) {
        log::info!(target: "innergate::policy", "{line}");
    }
}

/// The response phase's exchange: reads everything, edits response headers.
struct OnResponse<'s> {
    req: &'s RequestHead,
    resp: &'s mut ResponseHead,
    info: RequestInfo<'s>,
    route: &'s Route,
    vars: &'s mut Vars,
    forward_error: Option<ProxyError>,
}

impl OnResponse<'_> {
    fn view(&self) -> View<'_> {
        View {
            req: self.req,
            resp: Some(self.resp),
            info: self.info,
            route: self.route,
            vars: self.vars,
            forward_error: self.forward_error,
        }
    }
}

impl Exchange for OnResponse<'_> {
    fn facts(&self) -> &dyn Facts {
        self
    }
    fn headers(&mut self) -> &mut dyn HeadersMut {
        &mut self.resp.headers
    }
    fn set_var(&mut self, name: &str, value: String) {
        self.vars.set(name, value);
    }
    fn set_target(&mut self, _: &str) {
        // Validation keeps url-rewrite out of on_http_response.
    }
    fn log(&mut self, line: String) {
        log::info!(target: "innergate::policy", "{line}");
    }
}

/// Runs `on_http_request` of `entry` and of every endpoint it forwards to.
pub(crate) fn run_request<'t>(
    table: &'t RouteTable,
    entry: EndpointIdx,
    req: &mut RequestHead,
    info: RequestInfo<'_>,
    state: &mut ExchangeState,
) -> RequestOutcome<'t> {
    state.reset();
    state.chain.push(entry);
    let mut current_idx = entry;
    let mut current = table.route(entry);
    'endpoint: loop {
        for rule in &current.policy.on_http_request {
            let mut x = OnRequest {
                req: &mut *req,
                info,
                route: current,
                vars: &mut state.vars,
                forward_error: state.forward_error,
            };
            if !rule.applies(&x) {
                continue;
            }
            for action in &rule.actions {
                match action.execute(&mut x) {
                    Verdict::Next => {}
                    Verdict::Respond(custom) => {
                        return RequestOutcome::Answer {
                            answer: Answer::Custom(custom, current),
                            phases: state.chain.len(),
                        }
                    }
                    Verdict::Deny(status) => {
                        return RequestOutcome::Answer {
                            answer: Answer::Deny(status),
                            phases: state.chain.len(),
                        }
                    }
                    Verdict::Close => return RequestOutcome::Close,
                    Verdict::Redirect {
                        status,
                        location,
                        headers,
                    } => {
                        return RequestOutcome::Answer {
                            answer: Answer::Redirect(status, location, headers, current),
                            phases: state.chain.len(),
                        }
                    }
                    Verdict::Restricted => {
                        return RequestOutcome::Answer {
                            answer: Answer::Error(ProxyError::Restricted),
                            phases: 0,
                        }
                    }
                    Verdict::Unauthorized(realm) => {
                        return RequestOutcome::Answer {
                            answer: Answer::Unauthorized(realm),
                            phases: 0,
                        }
                    }
                    // Validation keeps terminate-tls in on_tcp_connect.
                    Verdict::TerminateTls(_) => {}
                    Verdict::RateLimit(limit, bucket) => {
                        let counters = table.limit(current_idx, limit);
                        let admitted = counters.map_or(Ok(()), |c| {
                            c.admit(info.conn.worker, bucket, crate::ratelimit::now_ms())
                        });
                        if let Err(retry_after) = admitted {
                            return RequestOutcome::Answer {
                                answer: Answer::RateLimited(retry_after),
                                phases: 0,
                            };
                        }
                    }
                    Verdict::ForwardInternal(forward) => {
                        match resolve_forward(table, current, forward, &x, &state.chain) {
                            Ok(next) => {
                                state.chain.push(next);
                                current_idx = next;
                                current = table.route(next);
                                continue 'endpoint;
                            }
                            Err(error) if forward.on_error == OnError::Continue => {
                                // Later actions and rules read it as
                                // actions.forward_internal.error.*.
                                x.forward_error = Some(error);
                                state.forward_error = Some(error);
                            }
                            Err(error) => {
                                // Counted as a forward-internal failure.
                                state.forward_error = Some(error);
                                return RequestOutcome::Answer {
                                    answer: Answer::Error(error),
                                    phases: 0,
                                };
                            }
                        }
                    }
                }
            }
        }
        let error = match current.target {
            Target::Upstream(ref addr) => return RequestOutcome::Upstream(addr.clone()),
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

/// How a connection leaves `on_tcp_connect`.
#[derive(Debug)]
pub(crate) enum ConnectOutcome {
    /// Go on: for tcp, to the upstream of the chain's last endpoint; for http, to
    /// reading requests.
    Proceed(Target),
    /// Close the connection (deny, close-connection, restrict-ips, or a failed
    /// forward with on_error: halt).
    Close(Option<ProxyError>),
}

/// Headers for phases that have none (on_tcp_connect): validation keeps the header
/// actions out, so nothing ever arrives here.
struct NoHeaders;

impl HeadersMut for NoHeaders {
    fn append(&mut self, _: &str, _: &str) {}
    fn remove(&mut self, _: &str) {}
}

/// The connect phase's exchange: connection facts only.
struct OnConnect<'s> {
    conn: &'s ConnInfo,
    route: &'s Route,
    vars: &'s mut Vars,
    forward_error: Option<ProxyError>,
    none: NoHeaders,
}

impl Facts for OnConnect<'_> {
    fn string(&self, var: Var) -> &str {
        match var {
            Var::ClientIp => &self.conn.client_ip,
            Var::TlsSni => self.conn.sni.as_deref().unwrap_or(""),
            Var::EndpointId => &self.route.id,
            Var::EndpointUrl => &self.route.url_text,
            Var::EndpointHost => &self.route.host_text,
            Var::EndpointProtocol => self.route.url.scheme.as_str(),
            Var::ForwardErrorCode => self.forward_error.map_or("", ProxyError::code),
            Var::ForwardErrorMessage => self.forward_error.map_or("", ProxyError::message),
            // Request variables are refused in on_tcp_connect at create time.
            _ => "",
        }
    }
    fn int(&self, var: Var) -> i64 {
        match var {
            Var::ClientPort => i64::from(self.conn.client_port),
            Var::ServerPort => i64::from(self.conn.server_port),
            _ => 0,
        }
    }
    fn count(&self, _: MapVar, _: &str) -> usize {
        0
    }
    fn value(&self, _: MapVar, _: &str, _: usize) -> Option<&str> {
        None
    }
    fn map_size(&self, _: MapVar) -> usize {
        0
    }
    fn user_var(&self, name: &str) -> Option<&str> {
        self.vars.get(name)
    }
}

impl Exchange for OnConnect<'_> {
    fn facts(&self) -> &dyn Facts {
        self
    }
    fn headers(&mut self) -> &mut dyn HeadersMut {
        &mut self.none
    }
    fn set_var(&mut self, name: &str, value: String) {
        self.vars.set(name, value);
    }
    fn set_target(&mut self, _: &str) {}
    fn log(&mut self, line: String) {
        log::info!(target: "innergate::policy", "{line}");
    }
}

/// Runs `on_tcp_connect` of `entry` and, for tcp/tls, of every endpoint it forwards
/// to (a pool member is picked per connection).
pub(crate) fn run_connect(
    table: &RouteTable,
    entry: EndpointIdx,
    conn: &ConnInfo,
    state: &mut ExchangeState,
) -> ConnectOutcome {
    state.reset();
    state.chain.push(entry);
    let mut current_idx = entry;
    let mut current = table.route(entry);
    'endpoint: loop {
        for rule in &current.policy.on_tcp_connect {
            let mut x = OnConnect {
                conn,
                route: current,
                vars: &mut state.vars,
                forward_error: state.forward_error,
                none: NoHeaders,
            };
            if !rule.applies(&x) {
                continue;
            }
            for action in &rule.actions {
                match action.execute(&mut x) {
                    Verdict::Next => {}
                    Verdict::Deny(_) | Verdict::Close => return ConnectOutcome::Close(None),
                    Verdict::Restricted => {
                        return ConnectOutcome::Close(Some(ProxyError::Restricted))
                    }
                    Verdict::TerminateTls(action) => {
                        state.terminate = Some((current_idx, action as *const _ as usize));
                    }
                    Verdict::ForwardInternal(forward) => {
                        match resolve_forward(table, current, forward, &x, &state.chain) {
                            Ok(next) => {
                                state.chain.push(next);
                                current_idx = next;
                                current = table.route(next);
                                continue 'endpoint;
                            }
                            Err(error) if forward.on_error == OnError::Continue => {
                                x.forward_error = Some(error);
                                state.forward_error = Some(error);
                            }
                            Err(error) => return ConnectOutcome::Close(Some(error)),
                        }
                    }
                    // Validation keeps the other actions out of on_tcp_connect.
                    _ => {}
                }
            }
        }
        return ConnectOutcome::Proceed(current.target.clone());
    }
}

/// Finds the endpoint a forward-internal lands on, within the forwarder's account.
fn resolve_forward(
    table: &RouteTable,
    from: &Route,
    forward: &ForwardInternal,
    facts: &dyn Facts,
    chain: &Chain,
) -> Result<EndpointIdx, ProxyError> {
    let target = forward
        .resolve(facts)
        .map_err(|_| ProxyError::ForwardInvalidTarget)?;
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
    Ok(table.pick(pool))
}

/// Runs `on_http_response` over `chain[..phases]`, innermost endpoint first. When an action
/// replaces the response, returns it, the endpoint that ran it, and how many outer
/// endpoints are still to run over the replacement.
pub(crate) fn run_response<'t>(
    table: &'t RouteTable,
    state: &mut ExchangeState,
    phases: usize,
    req: &RequestHead,
    resp: &mut ResponseHead,
    info: RequestInfo<'_>,
) -> Option<(&'t CustomResponse, &'t Route, usize)> {
    for (position, &idx) in state.chain[..phases].iter().enumerate().rev() {
        let route = table.route(idx);
        for rule in &route.policy.on_http_response {
            let mut x = OnResponse {
                req,
                resp: &mut *resp,
                info,
                route,
                vars: &mut state.vars,
                forward_error: state.forward_error,
            };
            if !rule.applies(&x) {
                continue;
            }
            for action in &rule.actions {
                // Only custom-response ends this phase: validation keeps the other
                // ending actions out of on_http_response.
                if let Verdict::Respond(custom) = action.execute(&mut x) {
                    return Some((custom, route, position));
                }
            }
        }
    }
    None
}
