//! One exchange: read a request head, route it, let the endpoint's `on_tcp_connect`
//! admit the connection (once per endpoint per connection), run the request phases,
//! then proxy or answer locally — and count and log the exchange exactly once,
//! whatever ended it. A panic while serving it ends this connection only.

use std::time::Instant;

use std::time::Duration;

use super::client::{request_info, Client, ClientStream, Next, RequestFacts, Scratch};
use super::framing::{self, BodyLength};
use super::head::{HeadError, RequestHead};
use super::local;
use crate::access_log;
use crate::confine::confine;
use crate::error::ProxyError;
use crate::policy::{self, Admission, RequestOutcome};
use crate::routes::RouteTable;
use crate::stats;
use crate::worker::Worker;
use innergate_table::policy::ERROR_CODE_HEADER;

/// How long an idle keep-alive connection of a draining worker waits for a request
/// its client may already have sent, before it closes. A request that arrives in
/// time is answered with `Connection: close`, so a client never sees its request
/// meet a closed socket just because it was on the wire when the drain began.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// Reads until a complete request head is buffered. `Ok(None)`: the client closed or
/// went quiet, and the connection just ends.
pub(super) async fn read_request_head<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    req: &mut RequestHead,
    first: bool,
) -> Result<Option<usize>, ProxyError> {
    let config = &worker.config;
    let mut started: Option<Instant> = None;
    loop {
        if !client.rb.is_empty() {
            match req.parse(client.rb.bytes()) {
                Ok(Some(n)) => return Ok(Some(n)),
                Ok(None) => {}
                Err(HeadError::TooManyHeaders) => return Err(ProxyError::HeadersTooLarge),
                Err(HeadError::Malformed) => return Err(ProxyError::MalformedRequest),
            }
            if client.rb.len() >= config.max_header_bytes {
                return Err(ProxyError::HeadersTooLarge);
            }
            started.get_or_insert_with(Instant::now);
        }
        // A quiet keep-alive connection gets the idle timeout; once a request has
        // begun (or on a new connection) the whole head must arrive in time.
        let mut wait = match started {
            Some(t) => config.header_timeout.saturating_sub(t.elapsed()),
            None if first => config.header_timeout,
            None => config.idle_timeout,
        };
        let idle = started.is_none() && !first;
        if idle && worker.drain.is_draining() {
            // The client may have sent its next request already: give it a moment.
            wait = wait.min(DRAIN_IDLE_GRACE);
        }
        let read = client.rb.fill(&mut client.stream, config.max_header_bytes);
        if idle && !worker.drain.is_draining() {
            // An idle connection stops waiting the idle timeout once the drain
            // begins, and waits out the grace instead.
            let mut read = std::pin::pin!(monoio::time::timeout(wait, read));
            monoio::select! {
                done = &mut read => match done {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => return Ok(None),
                },
                _ = worker.drain.started() => {}
            }
            match monoio::time::timeout(DRAIN_IDLE_GRACE, read).await {
                Ok(Ok(Ok(n))) if n > 0 => continue,
                _ => return Ok(None),
            }
        }
        match monoio::time::timeout(wait, read).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Ok(None),
        }
    }
}

/// Reads and serves the connection's next exchange.
pub(super) async fn serve_one<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    first: bool,
) -> Next {
    let read = read_request_head(worker, client, &mut s.req, first).await;
    let started = Instant::now();
    // A request keeps the table it started with.
    let table = worker.table();
    let next = match read {
        Ok(None) => return Next::Close,
        Ok(Some(head_len)) => {
            client.rb.consume(head_len);
            s.begin(head_len);
            // Boxed for the time of the exchange only: an idle connection's task then
            // holds none of the request path's state.
            match confine(Box::pin(route_and_serve(worker, client, s, &table))).await {
                Ok(next) => next,
                Err(panic) => Box::pin(after_panic(worker, client, s, &table, panic)).await,
            }
        }
        Err(e) => {
            s.begin(0);
            Box::pin(local::answer_error(client, s, e)).await
        }
    };
    record(worker, client, s, &table, started);
    next
}

/// Routes the request and serves it.
async fn route_and_serve<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    table: &RouteTable,
) -> Next {
    let Ok(body) = framing::request_body(&s.req) else {
        return local::answer_error(client, s, ProxyError::AmbiguousFraming).await;
    };
    // What the client's Connection header names is its connection's, not the
    // request's: gone before any policy reads or adds fields.
    super::fields::remove_nominated(&mut s.req.headers);
    let mut facts = RequestFacts {
        body,
        body_limit: u64::MAX,
        keep_alive: s.req.wants_keep_alive(),
        is_head: s.req.is_head(),
        minor_version: s.req.minor_version,
    };
    let mut host_buf = [0u8; 256];
    let Some(host) = s.req.host(&mut host_buf) else {
        return local::answer_error(client, s, ProxyError::MissingHost).await;
    };
    s.host.push_str(host);
    // An absolute-form target is brought to origin-form, so that the upstream cannot
    // read a host other than the one the request was routed by.
    if !s.req.normalize_absolute_target(&s.host) {
        return local::answer_error(client, s, ProxyError::MalformedRequest).await;
    }
    let Some(pool) = table.public_by_host(client.url_port, &s.host) else {
        return local::answer_error_keep(worker, client, s, ProxyError::NoEndpoint, facts).await;
    };
    if misdirected(client, table, pool, &s.host) {
        let e = ProxyError::Misdirected;
        return local::answer_error_keep(worker, client, s, e, facts).await;
    }
    let entry = table.pick(pool);
    s.entry = Some(entry);
    // No request reaches an endpoint before its on_tcp_connect ran on this
    // connection; a refusal there closes the connection.
    let connect_vars = if table.route(entry).policy.on_tcp_connect.is_empty() {
        None
    } else {
        match client.state.admit(table, entry) {
            Admission::Admitted(vars) => Some(vars),
            Admission::Refused => return Next::Close,
        }
    };
    s.state.start(entry, connect_vars);
    let info = request_info(client, &s.host, facts);
    let outcome = policy::run_request(table, &mut s.req, info, &mut s.state);
    crate::fault::trip(&s.req, "before-response");
    // The policy's verdict comes first; only a request that goes on to an upstream
    // is held to the body limit of the endpoints it passed through.
    match outcome {
        RequestOutcome::Close => Next::Close,
        RequestOutcome::Respond(response) => {
            local::answer(worker, client, s, table, Ok(response), facts).await
        }
        RequestOutcome::Fail(error) => {
            local::answer(worker, client, s, table, Err(error), facts).await
        }
        RequestOutcome::Upstream(upstream) => {
            facts.body_limit = s
                .state
                .chain
                .iter()
                .filter_map(|&e| table.route(e).max_request_body)
                .min()
                .unwrap_or(u64::MAX);
            if matches!(facts.body, BodyLength::Fixed(n) if n > facts.body_limit) {
                let e = ProxyError::BodyTooLarge;
                return local::answer_error_keep(worker, client, s, e, facts).await;
            }
            super::proxy::proxy(worker, client, s, table, upstream, facts).await
        }
    }
}

/// Whether an https request names a host served by another endpoint than the one
/// its TLS handshake was for (RFC 9110 §15.5.20): that connection was made for the
/// SNI's endpoint, with its certificate, and a request for another endpoint belongs
/// on a connection of its own. An SNI that names no endpoint (a client that asked
/// for the default certificate) binds the connection to none.
fn misdirected<S>(client: &Client<S>, table: &RouteTable, pool: u32, host: &str) -> bool {
    let Some(sni) = &client.state.info.sni else {
        return false;
    };
    !sni.eq_ignore_ascii_case(host)
        && matches!(table.public_by_host(client.url_port, sni), Some(p) if p != pool)
}

/// After a panic while serving the exchange: counted and logged with the endpoint,
/// answered with a 500 if no response byte went out yet, and the connection closes
/// (its state may be anything now). The worker and its other connections go on.
async fn after_panic<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    table: &RouteTable,
    panic: Box<dyn std::any::Any + Send>,
) -> Next {
    worker.stats.borrow_mut().panics += 1;
    let endpoint = s.entry.map_or("none", |e| table.route(e).id.as_str());
    log::error!(
        "panic while serving a request of {} for endpoint {endpoint} (host {:?}): {}; \
         closing this connection only",
        client.peer,
        s.host,
        crate::confine::message(&*panic)
    );
    if s.sent > 0 {
        s.answered = true;
        return Next::Close;
    }
    local::answer_error(client, s, ProxyError::Internal).await
}

/// Counts the exchange in /metrics and writes its access-log line.
fn record<S>(
    worker: &Worker,
    client: &Client<S>,
    s: &Scratch,
    table: &RouteTable,
    started: Instant,
) {
    let duration = started.elapsed();
    let status = if s.answered { s.resp.status } else { 0 };
    let exchange = stats::Exchange {
        status,
        duration_us: duration.as_micros() as u64,
        bytes_in: s.received,
        bytes_out: s.sent,
        hops: s.state.chain.len().saturating_sub(1),
        forward_failure: s.state.forward_error,
    };
    let route = s.entry.map(|e| table.route(e));
    worker
        .stats
        .borrow_mut()
        .record_exchange(route.map(|r| r.stats_slot), &exchange);
    let Some(log) = &worker.access_log else {
        return;
    };
    let mut chain = s
        .state
        .chain
        .iter()
        .skip(1)
        .map(|&e| table.route(e).id.as_str());
    let error = s
        .resp
        .headers
        .get_all(ERROR_CODE_HEADER)
        .next()
        .filter(|_| s.answered)
        .and_then(|v| std::str::from_utf8(v).ok());
    log.record(access_log::Entry {
        endpoint_id: route.map_or("", |r| r.id.as_str()),
        account: route.map_or("", |r| &r.account_id),
        chain: &mut chain,
        client: &client.state.info.client_ip,
        method: if s.head { s.req.method() } else { b"" },
        host: &s.host,
        path: if s.head { s.req.target() } else { b"" },
        status,
        bytes_in: s.received,
        bytes_out: s.sent,
        duration,
        error,
    });
}
