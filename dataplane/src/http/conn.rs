//! One client connection: read a request head, route it, run the policy chain, then
//! proxy to the upstream or answer locally; repeat while the connection is kept alive.
//! Pipelined requests are answered in order because they are served one at a time.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::os::fd::RawFd;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};

use super::body::{self, Chunking, CopyError, BODY_BUFFER};
use super::buf::{write_all, ReadBuf};
use super::framing::{self, BodyLength};
use super::head::{write_decimal, HeadError, RequestHead, ResponseHead};
use crate::access_log;
use crate::error::{ProxyError, ERROR_CODE_HEADER};
use crate::policy::{
    self, Answer, ConnInfo, ConnectOutcome, ExchangeState, RequestInfo, RequestOutcome, View,
};
use crate::routes::{EndpointIdx, Route, RouteTable};
use crate::stats;
use crate::upstream::{UpstreamAddr, UpstreamConn, UpstreamPool, UpstreamStream};
use crate::worker::Worker;
use innergate_table::policy::actions::sanitize;

// Local answers, errors and protocol switches are awaited through `Box::pin`: their
// futures would otherwise be part of every connection's task, and an idle keep-alive
// connection should cost little more than its socket and read buffer.

/// The read buffer a client connection starts with and returns to between requests
/// (nginx: client_header_buffer_size 1k); it grows while a head needs more.
const IDLE_READ_BUFFER: usize = 2 * 1024;

/// Response bodies up to this size are read whole before the head is written, and
/// sent with it.
const SMALL_BODY: usize = 16 * 1024;

/// The most write-buffer capacity a connection keeps between requests.
const IDLE_WRITE_BUFFER: usize = 4 * 1024;

/// What happens to the client connection after an exchange.
#[derive(Debug)]
enum Next {
    KeepAlive,
    Close,
    /// The upstream switched protocols (101): the connection becomes a byte tunnel
    /// to this upstream connection.
    Tunnel(UpstreamStream),
}

/// A client connection's byte stream: plain TCP or TLS.
pub(crate) trait ClientStream: AsyncReadRent + AsyncWriteRent + Split {}

impl<T: AsyncReadRent + AsyncWriteRent + Split> ClientStream for T {}

/// The client side of a connection.
struct Client<S> {
    stream: S,
    rb: ReadBuf,
    peer: SocketAddr,
    info: ConnInfo,
    /// The URL port of the listener that accepted it.
    url_port: u16,
}

/// Per-connection scratch space, reused by every request on the connection.
#[derive(Default)]
struct Scratch {
    req: RequestHead,
    resp: ResponseHead,
    out: Vec<u8>,
    body: Vec<u8>,
    state: ExchangeState,
    /// Bytes of the current exchange read from and written to the client.
    received: u64,
    sent: u64,
}

/// What the request head says about the exchange.
#[derive(Clone, Copy, Debug)]
struct RequestFacts {
    body: BodyLength,
    /// The most body bytes the endpoints of the chain accept (known once routed).
    body_limit: u64,
    keep_alive: bool,
    is_head: bool,
    minor_version: u8,
}

/// Serves a client connection until it closes or a request ends it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S: ClientStream>(
    worker: Rc<Worker>,
    stream: S,
    peer: SocketAddr,
    url_port: u16,
    server_port: u16,
    scheme: &'static str,
    sni: Option<String>,
    fd: RawFd,
) {
    let info = ConnInfo {
        worker: worker.id,
        scheme,
        sni,
        client_ip: peer.ip().to_string(),
        client_port: peer.port(),
        server_port,
    };
    let mut client = Client {
        stream,
        rb: ReadBuf::with_capacity(IDLE_READ_BUFFER),
        peer,
        info,
        url_port,
    };
    let mut scratch = Scratch::default();
    let mut first = true;
    loop {
        match serve_one(&worker, &mut client, &mut scratch, first).await {
            Next::KeepAlive if worker.drain.is_draining() => return,
            Next::KeepAlive => {
                first = false;
                // Between requests the connection gives back what a large head or
                // answer made it grow to.
                client.rb.shrink_if_empty(IDLE_READ_BUFFER);
                if scratch.out.capacity() > IDLE_WRITE_BUFFER {
                    scratch.out = Vec::new();
                }
            }
            Next::Close => return,
            Next::Tunnel(upstream) => {
                let fds = [fd, upstream.raw_fd()];
                Box::pin(crate::relay::pipe(
                    client.stream,
                    upstream,
                    fds,
                    worker.config.tcp_idle_timeout,
                    worker.config.tcp_buffer,
                ))
                .await;
                return;
            }
        }
    }
}

async fn serve_one<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    first: bool,
) -> Next {
    let head_len = match read_request_head(worker, client, &mut s.req, first).await {
        Ok(Some(n)) => n,
        Ok(None) => return Next::Close,
        Err(e) => return Box::pin(answer_error(client, s, e)).await,
    };
    client.rb.consume(head_len);
    let started = Instant::now();
    s.received = head_len as u64;
    s.sent = 0;
    s.state.forward_error = None;
    let Ok(body) = framing::request_body(&s.req) else {
        return Box::pin(answer_error(client, s, ProxyError::AmbiguousFraming)).await;
    };
    let facts = RequestFacts {
        body,
        body_limit: u64::MAX,
        keep_alive: s.req.wants_keep_alive(),
        is_head: s.req.is_head(),
        minor_version: s.req.minor_version,
    };
    let mut host_buf = [0u8; 256];
    let Some(host) = s.req.host(&mut host_buf) else {
        return Box::pin(answer_error(client, s, ProxyError::MissingHost)).await;
    };
    // An absolute-form target is brought to origin-form, so that the upstream cannot
    // read a host other than the one the request was routed by.
    if !s.req.normalize_absolute_target(host) {
        return Box::pin(answer_error(client, s, ProxyError::MalformedRequest)).await;
    }
    let table = worker.table();
    let Some(pool) = table.public_by_host(client.url_port, host) else {
        let answer = Answer::Error(ProxyError::NoEndpoint);
        let next = Box::pin(answer_locally(client, s, &table, answer, 0, facts, host)).await;
        log_exchange(worker, client, s, &table, None, host, started);
        return next;
    };
    let entry = table.pick(pool);
    // on_tcp_connect runs once per connection; on a shared http port the first
    // request's Host names the endpoint whose policy that is.
    if first && !table.route(entry).policy.on_tcp_connect.is_empty() {
        if let ConnectOutcome::Close(_) =
            policy::run_connect(&table, entry, &client.info, &mut s.state)
        {
            return Next::Close;
        }
    }
    let info = request_info(&client.info, host, facts);
    let slot = table.route(entry).stats_slot;
    let outcome = policy::run_request(&table, entry, &mut s.req, info, &mut s.state);
    // The strictest body limit of the endpoints the request passed through holds
    // whoever answers it.
    let body_limit = s
        .state
        .chain
        .iter()
        .filter_map(|&e| table.route(e).max_request_body)
        .min()
        .unwrap_or(u64::MAX);
    let facts = RequestFacts {
        body_limit,
        ..facts
    };
    let too_large = matches!(facts.body, BodyLength::Fixed(n) if n > body_limit);
    let next = match outcome {
        RequestOutcome::Close => return Next::Close,
        _ if too_large => {
            let e = ProxyError::BodyTooLarge;
            Box::pin(answer_error_keep(client, s, e, facts)).await
        }
        RequestOutcome::Upstream(addr) => {
            // Boxed for the time of the exchange only: an idle connection's task
            // then holds none of the proxy path's state.
            Box::pin(proxy(worker, client, s, &table, &addr, host, facts)).await
        }
        RequestOutcome::Answer { answer, phases } => {
            Box::pin(answer_locally(
                client, s, &table, answer, phases, facts, host,
            ))
            .await
        }
    };
    let exchange = stats::Exchange {
        status: s.resp.status,
        duration_us: started.elapsed().as_micros() as u64,
        bytes_in: s.received,
        bytes_out: s.sent,
        hops: s.state.chain.len().saturating_sub(1),
        forward_failure: s.state.forward_error,
    };
    worker.stats.borrow_mut().record_exchange(slot, &exchange);
    log_exchange(worker, client, s, &table, Some(entry), host, started);
    next
}

/// Writes the access log line of the exchange just answered, when logs are on.
fn log_exchange<S>(
    worker: &Worker,
    client: &Client<S>,
    s: &Scratch,
    table: &RouteTable,
    entry: Option<EndpointIdx>,
    host: &str,
    started: Instant,
) {
    let Some(log) = &worker.access_log else {
        return;
    };
    let route = entry.map(|e| table.route(e));
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
        .and_then(|v| std::str::from_utf8(v).ok());
    log.record(access_log::Entry {
        endpoint_id: route.map_or("", |r| r.id.as_str()),
        account: route.map_or("", |r| &r.account_id),
        chain: &mut chain,
        client: &client.info.client_ip,
        method: s.req.method(),
        host,
        path: s.req.target(),
        status: s.resp.status,
        bytes_in: s.received,
        bytes_out: s.sent,
        duration: started.elapsed(),
        error,
    });
}

/// Reads until a complete request head is buffered. `Ok(None)`: the client closed or
/// went quiet, and the connection just ends.
async fn read_request_head<S: ClientStream>(
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
        let wait = match started {
            Some(t) => config.header_timeout.saturating_sub(t.elapsed()),
            None if first => config.header_timeout,
            None => config.idle_timeout,
        };
        // An idle keep-alive connection (nothing of a next request read yet) closes
        // as soon as the worker drains.
        let idle = started.is_none() && !first;
        if idle && worker.drain.is_draining() {
            return Ok(None);
        }
        let read = client.rb.fill(&mut client.stream, config.max_header_bytes);
        if idle {
            let mut read = std::pin::pin!(monoio::time::timeout(wait, read));
            monoio::select! {
                done = &mut read => match done {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => return Ok(None),
                },
                _ = worker.drain.started() => return Ok(None),
            }
        }
        match monoio::time::timeout(wait, read).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Ok(None),
        }
    }
}

/// Sends the request to the upstream at `addr` and the response back to the client.
async fn proxy<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    table: &RouteTable,
    addr: &UpstreamAddr,
    host: &str,
    facts: RequestFacts,
) -> Next {
    let config = &worker.config;
    let expect_continue = facts.minor_version == 1
        && !facts.body.is_empty()
        && s.req.headers.has_token("expect", "100-continue");
    // A protocol switch (WebSocket) keeps its Upgrade header on the way up.
    // Only WebSocket may switch protocols: an upstream switched to anything else (h2c
    // above all) would carry requests the policies never saw.
    let upgrade = facts.minor_version == 1
        && s.req.headers.has_token("connection", "upgrade")
        && s.req.headers.get_all("upgrade").count() == 1
        && s.req.headers.has_token("upgrade", "websocket");
    encode_upstream_request(
        &s.req,
        &client.info.client_ip,
        host,
        client.info.scheme,
        upgrade,
        &mut s.out,
    );

    // A reused connection the upstream closed meanwhile fails before any response
    // byte; a request without a body can then be sent again on a fresh connection.
    let mut attempt = 0;
    let mut up = loop {
        attempt += 1;
        let retryable = |up: &UpstreamConn| up.reused && attempt == 1 && facts.body.is_empty();
        let mut up = match worker.pool.take(addr) {
            Some(up) => up,
            // Boxed: a new upstream connection is rare with keep-alive, and its
            // future (TLS included) would otherwise enlarge every connection's task.
            None => match Box::pin(UpstreamPool::connect(
                addr,
                config.upstream_connect_timeout,
                &worker.upstream_tls,
            ))
            .await
            {
                Ok(up) => up,
                Err(e) => {
                    worker.stats.borrow_mut().upstream_connect_errors += 1;
                    return Box::pin(answer_error_keep(client, s, e, facts)).await;
                }
            },
        };
        let head = std::mem::take(&mut s.out);
        let (res, head) = monoio::io::AsyncWriteRentExt::write_all(&mut up.stream, head).await;
        s.out = head;
        if res.is_err() {
            if retryable(&up) {
                continue;
            }
            return Box::pin(answer_error_keep(
                client,
                s,
                ProxyError::UpstreamClosed,
                facts,
            ))
            .await;
        }
        if !facts.body.is_empty() {
            if expect_continue {
                s.out.clear();
                s.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                s.sent += s.out.len() as u64;
                if write_all(&mut client.stream, &mut s.out).await.is_err() {
                    return Next::Close;
                }
            }
            let copied = body::copy(
                &mut client.stream,
                &mut client.rb,
                &mut up.stream,
                facts.body,
                Chunking::Keep,
                config.body_timeout,
                &mut s.received,
                facts.body_limit,
            )
            .await;
            match copied {
                Ok(()) => {}
                Err(CopyError::Source) => return Next::Close,
                Err(CopyError::Framing) => {
                    return Box::pin(answer_error(client, s, ProxyError::AmbiguousFraming)).await
                }
                // The upstream saw part of a body and loses the connection.
                Err(CopyError::TooLarge) => {
                    return Box::pin(answer_error(client, s, ProxyError::BodyTooLarge)).await
                }
                Err(CopyError::Sink) => {
                    return Box::pin(answer_error(client, s, ProxyError::UpstreamClosed)).await
                }
            }
        }
        match read_response_head(&mut up, &mut s.resp, config.upstream_read_timeout).await {
            Ok(()) => break up,
            Err(ProxyError::UpstreamClosed) if retryable(&up) => continue,
            Err(e) => {
                let close = !facts.body.is_empty();
                return Box::pin(answer_error_with(client, s, e, facts, close)).await;
            }
        }
    };

    // Interim responses: 100 was ours to send; others go to HTTP/1.1 clients.
    while (100..200).contains(&s.resp.status) {
        if s.resp.status == 101 {
            if !upgrade {
                return Box::pin(answer_error(client, s, ProxyError::UpstreamInvalidResponse))
                    .await;
            }
            return Box::pin(switch_protocols(client, s, up)).await;
        }
        if s.resp.status != 100 && facts.minor_version == 1 {
            s.out.clear();
            s.resp.write_status_line(&mut s.out);
            s.resp.headers.write_fields(&mut s.out, is_hop_by_hop);
            s.out.extend_from_slice(b"\r\n");
            s.sent += s.out.len() as u64;
            if write_all(&mut client.stream, &mut s.out).await.is_err() {
                return Next::Close;
            }
        }
        if let Err(e) = read_response_head(&mut up, &mut s.resp, config.upstream_read_timeout).await
        {
            return Box::pin(answer_error(client, s, e)).await;
        }
    }

    let Ok(resp_body) = framing::response_body(&s.resp, facts.is_head) else {
        return Box::pin(answer_error_keep(
            client,
            s,
            ProxyError::UpstreamInvalidResponse,
            facts,
        ))
        .await;
    };
    let upstream_reusable = s.resp.keeps_alive() && resp_body != BodyLength::UntilClose;
    s.resp.headers.remove_all(ERROR_CODE_HEADER.as_bytes());

    let info = request_info(&client.info, host, facts);
    let phases = s.state.chain.len();
    if let Some((custom, route, outer)) =
        policy::run_response(table, &mut s.state, phases, &s.req, &mut s.resp, info)
    {
        // A policy replaced the response: its body is not wanted.
        if resp_body.is_empty() && upstream_reusable {
            worker.pool.put(addr, up);
        }
        let answer = Answer::Custom(custom, route);
        return Box::pin(answer_locally(client, s, table, answer, outer, facts, host)).await;
    }

    // A small body goes out with the head in one write. Upstreams that write the head
    // and the body separately (nginx with sendfile) would otherwise cost a second read
    // and a second client write per response: wait for the rest of it first.
    if let BodyLength::Fixed(n) = resp_body {
        while n as usize <= SMALL_BODY && (up.rb.len() as u64) < n {
            let read = up.rb.fill(&mut up.stream, BODY_BUFFER);
            match monoio::time::timeout(config.upstream_read_timeout, read).await {
                Ok(Ok(k)) if k > 0 => {}
                Ok(_) => {
                    let e = ProxyError::UpstreamClosed;
                    return Box::pin(answer_error_keep(client, s, e, facts)).await;
                }
                Err(_) => {
                    let e = ProxyError::UpstreamTimeout;
                    return Box::pin(answer_error_keep(client, s, e, facts)).await;
                }
            }
        }
    }

    let remove_chunking = facts.minor_version == 0 && resp_body == BodyLength::Chunked;
    let close = !facts.keep_alive || resp_body == BodyLength::UntilClose || remove_chunking;
    s.out.clear();
    s.resp.write_status_line(&mut s.out);
    s.resp.headers.write_fields(&mut s.out, |name| {
        is_hop_by_hop(name) || (remove_chunking && name.eq_ignore_ascii_case(b"transfer-encoding"))
    });
    write_connection_header(&mut s.out, close, facts.minor_version);
    s.out.extend_from_slice(b"\r\n");

    // A small body already read goes out with the head in one write.
    let mut remaining = resp_body;
    if let BodyLength::Fixed(n) = resp_body {
        if n as usize <= BODY_BUFFER && up.rb.len() as u64 >= n {
            s.out.extend_from_slice(&up.rb.bytes()[..n as usize]);
            up.rb.consume(n as usize);
            remaining = BodyLength::Empty;
        }
    }
    s.sent += s.out.len() as u64;
    if write_all(&mut client.stream, &mut s.out).await.is_err() {
        return Next::Close;
    }
    let chunking = if remove_chunking {
        Chunking::Remove
    } else {
        Chunking::Keep
    };
    let copied = body::copy(
        &mut up.stream,
        &mut up.rb,
        &mut client.stream,
        remaining,
        chunking,
        config.upstream_read_timeout,
        &mut s.sent,
        u64::MAX,
    )
    .await;
    match copied {
        Ok(()) if upstream_reusable => worker.pool.put(addr, up),
        Ok(()) => {}
        Err(_) => return Next::Close,
    }
    if close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Reads a response head from the upstream into `resp`, consuming it.
async fn read_response_head(
    up: &mut UpstreamConn,
    resp: &mut ResponseHead,
    timeout: Duration,
) -> Result<(), ProxyError> {
    loop {
        if !up.rb.is_empty() {
            match resp.parse(up.rb.bytes()) {
                Ok(Some(n)) => {
                    up.rb.consume(n);
                    return Ok(());
                }
                Ok(None) => {}
                Err(_) => return Err(ProxyError::UpstreamInvalidResponse),
            }
        }
        match monoio::time::timeout(timeout, up.rb.fill(&mut up.stream, 64 * 1024)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) if up.rb.is_empty() => return Err(ProxyError::UpstreamClosed),
            Ok(Ok(_)) | Ok(Err(_)) => {
                return Err(if up.rb.is_empty() {
                    ProxyError::UpstreamClosed
                } else {
                    ProxyError::UpstreamInvalidResponse
                })
            }
            Err(_) => return Err(ProxyError::UpstreamTimeout),
        }
    }
}

/// Writes the head the upstream receives: the client's request line and fields minus
/// hop-by-hop ones, plus X-Forwarded-For/Host/Proto describing the client side.
fn encode_upstream_request(
    req: &RequestHead,
    client_ip: &str,
    host: &str,
    scheme: &str,
    upgrade: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(req.method());
    out.push(b' ');
    out.extend_from_slice(req.target());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    req.headers.write_fields(out, |name| {
        is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
            || name.eq_ignore_ascii_case(b"x-forwarded-host")
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
    });
    out.extend_from_slice(b"x-forwarded-for: ");
    for earlier in req.headers.get_all("x-forwarded-for") {
        out.extend_from_slice(earlier);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-host: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(scheme.as_bytes());
    out.extend_from_slice(b"\r\n");
    if upgrade {
        for value in req.headers.get_all("upgrade") {
            out.extend_from_slice(b"upgrade: ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends the upstream's 101 to the client with its Upgrade and Connection fields, and
/// hands any bytes already read on, before the connection becomes a tunnel.
async fn switch_protocols<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    mut up: UpstreamConn,
) -> Next {
    s.out.clear();
    s.resp.write_status_line(&mut s.out);
    s.resp.headers.write_fields(&mut s.out, |name| {
        name.eq_ignore_ascii_case(ERROR_CODE_HEADER.as_bytes())
    });
    s.out.extend_from_slice(b"\r\n");
    if !up.rb.is_empty() {
        s.out.extend_from_slice(up.rb.bytes());
    }
    s.sent += s.out.len() as u64;
    if write_all(&mut client.stream, &mut s.out).await.is_err() {
        return Next::Close;
    }
    let early = client.rb.len();
    if early > 0 && client.rb.write_to(&mut up.stream, early).await.is_err() {
        return Next::Close;
    }
    Next::Tunnel(up.stream)
}

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

fn write_connection_header(out: &mut Vec<u8>, close: bool, minor_version: u8) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if minor_version == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}

/// What expressions read of this request, besides its head.
fn request_info<'a>(conn: &'a ConnInfo, host: &'a str, facts: RequestFacts) -> RequestInfo<'a> {
    RequestInfo {
        conn,
        scheme: conn.scheme,
        host,
        content_length: match facts.body {
            BodyLength::Empty => 0,
            BodyLength::Fixed(n) => n as i64,
            BodyLength::Chunked | BodyLength::UntilClose => -1,
        },
    }
}

/// Answers with a response the data plane makes, after the response phases of
/// `chain[..phases]`.
#[allow(clippy::too_many_arguments)]
async fn answer_locally<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    table: &RouteTable,
    answer: Answer<'_>,
    mut phases: usize,
    facts: RequestFacts,
    host: &str,
) -> Next {
    let info = request_info(&client.info, host, facts);
    build_answer(answer, s, info);
    while let Some((custom, route, outer)) =
        policy::run_response(table, &mut s.state, phases, &s.req, &mut s.resp, info)
    {
        build_answer(Answer::Custom(custom, route), s, info);
        phases = outer;
    }
    let close = !facts.keep_alive || !skip_unread_body(client, facts.body);
    send_local(client, s, facts, close).await
}

/// What `${…}` in a local answer reads: the request, and the endpoint that answered.
fn answer_view<'a>(
    req: &'a RequestHead,
    state: &'a ExchangeState,
    info: RequestInfo<'a>,
    route: &'a Route,
) -> View<'a> {
    View {
        req,
        resp: None,
        info,
        route,
        vars: &state.vars,
        forward_error: state.forward_error,
    }
}

/// Builds a local answer into `s.resp` and `s.body`; custom responses render their
/// `${…}` against the request and the endpoint that ran them.
fn build_answer(answer: Answer<'_>, s: &mut Scratch, info: RequestInfo<'_>) {
    s.body.clear();
    match answer {
        Answer::Custom(custom, route) => {
            let view = answer_view(&s.req, &s.state, info, route);
            s.resp.local(custom.status_code);
            for (name, value) in &custom.headers {
                let value = sanitize(value.render(&view));
                s.resp
                    .headers
                    .append_bytes(name.as_bytes(), value.as_bytes());
            }
            s.body
                .extend_from_slice(custom.body.render(&view).as_bytes());
        }
        Answer::Redirect(status, location, headers, route) => {
            let view = answer_view(&s.req, &s.state, info, route);
            s.resp.local(status);
            s.resp
                .headers
                .append_bytes(b"location", location.as_bytes());
            for (name, value) in headers {
                let value = sanitize(value.render(&view));
                s.resp
                    .headers
                    .append_bytes(name.as_bytes(), value.as_bytes());
            }
        }
        Answer::Unauthorized(realm) => {
            s.resp.local(401);
            let challenge = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
            s.resp
                .headers
                .append_bytes(b"www-authenticate", challenge.as_bytes());
            mark_error(&mut s.resp, &mut s.body, ProxyError::Unauthorized);
        }
        Answer::RateLimited(retry_after) => {
            s.resp.local(429);
            let mut seconds = Vec::new();
            write_decimal(&mut seconds, retry_after);
            s.resp.headers.append_bytes(b"retry-after", &seconds);
            mark_error(&mut s.resp, &mut s.body, ProxyError::RateLimited);
        }
        Answer::Deny(status) => {
            s.resp.local(status);
            mark_error(&mut s.resp, &mut s.body, ProxyError::Denied);
        }
        Answer::Error(error) => {
            s.resp.local(error.status());
            mark_error(&mut s.resp, &mut s.body, error);
        }
    }
}

fn mark_error(resp: &mut ResponseHead, body: &mut Vec<u8>, error: ProxyError) {
    resp.headers
        .append_bytes(b"content-type", b"text/plain; charset=utf-8");
    resp.headers
        .append_bytes(ERROR_CODE_HEADER.as_bytes(), error.code().as_bytes());
    body.extend_from_slice(error.message().as_bytes());
    body.push(b'\n');
}

async fn send_local<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    facts: RequestFacts,
    close: bool,
) -> Next {
    s.out.clear();
    s.resp.write_status_line(&mut s.out);
    s.resp.headers.write_fields(&mut s.out, |_| false);
    s.out.extend_from_slice(b"content-length: ");
    write_decimal(&mut s.out, s.body.len() as u64);
    s.out.extend_from_slice(b"\r\n");
    write_connection_header(&mut s.out, close, facts.minor_version);
    s.out.extend_from_slice(b"\r\n");
    if !facts.is_head {
        s.out.extend_from_slice(&s.body);
    }
    s.sent += s.out.len() as u64;
    if write_all(&mut client.stream, &mut s.out).await.is_err() || close {
        return Next::Close;
    }
    Next::KeepAlive
}

/// Answers an error and closes: the request could not be read reliably.
async fn answer_error<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    error: ProxyError,
) -> Next {
    let facts = RequestFacts {
        body: BodyLength::Empty,
        body_limit: u64::MAX,
        keep_alive: false,
        is_head: false,
        minor_version: 1,
    };
    answer_error_with(client, s, error, facts, true).await
}

/// Answers an error before the request body was sent on; the connection stays open
/// when the body can be skipped.
async fn answer_error_keep<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    error: ProxyError,
    facts: RequestFacts,
) -> Next {
    let close = !facts.keep_alive || !skip_unread_body(client, facts.body);
    answer_error_with(client, s, error, facts, close).await
}

/// Skips a request body that was not sent on, when it is already buffered, so the
/// connection can serve the next request; `false` means the connection must close.
fn skip_unread_body<S: ClientStream>(client: &mut Client<S>, body: BodyLength) -> bool {
    match body {
        BodyLength::Empty => true,
        BodyLength::Fixed(n) if client.rb.len() as u64 >= n => {
            client.rb.consume(n as usize);
            true
        }
        _ => false,
    }
}

async fn answer_error_with<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    error: ProxyError,
    facts: RequestFacts,
    close: bool,
) -> Next {
    if error.side() == crate::error::Side::Upstream {
        log::debug!("{} for {}: {}", error.code(), client.peer, error.message());
    }
    s.body.clear();
    s.resp.local(error.status());
    mark_error(&mut s.resp, &mut s.body, error);
    send_local(client, s, facts, close).await
}
