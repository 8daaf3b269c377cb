//! Proxying one request to its upstream: the head (hop-by-hop fields dropped,
//! X-Forwarded-* added), the body streamed by its framing, interim responses, the
//! response head through the response phases, the body streamed back; a reused
//! upstream connection that turns out closed is retried once when that is safe.

use std::time::Duration;

use monoio::io::AsyncWriteRentExt;

use super::body::{self, Chunking, CopyError, BODY_BUFFER};
use super::buf::write_all;
use super::client::{request_info, Client, ClientStream, Next, RequestFacts, Scratch};
use super::fields::{is_hop_by_hop, remove_from_upstream};
use super::framing::{self, BodyLength};
use super::head::{HeaderBlock, RequestHead, ResponseHead};
use super::local::{self, write_connection_header};
use crate::error::ProxyError;
use crate::policy;
use crate::routes::RouteTable;
use crate::upstream::{Upstream, UpstreamConn, UpstreamPool, UpstreamStream};
use crate::worker::Worker;

/// Response bodies up to this size are read whole before the head is written, and
/// sent with it.
const SMALL_BODY: usize = 16 * 1024;

/// Sends the request to `upstream` and the response back to the client.
pub(super) async fn proxy<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    table: &RouteTable,
    upstream: &Upstream,
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
        && is_only_websocket(&s.req.headers);
    encode_upstream_request(
        &s.req,
        &client.state.info.client_ip,
        &s.host,
        client.state.info.scheme,
        upgrade,
        &mut s.out,
    );

    // A reused connection the upstream closed meanwhile fails before any response
    // byte; a request without a body can then be sent again on a fresh connection.
    let mut attempt = 0;
    let mut up = loop {
        attempt += 1;
        let retryable = |up: &UpstreamConn| up.reused && attempt == 1 && facts.body.is_empty();
        let mut up = match worker.pool.take(upstream) {
            Some(up) => up,
            // Boxed: a new upstream connection is rare with keep-alive, and its
            // future (TLS included) would otherwise enlarge every connection's task.
            None => match Box::pin(open(worker, client, upstream)).await {
                Ok(up) => up,
                Err(e) => {
                    worker.stats.borrow_mut().upstream_connect_errors += 1;
                    return Box::pin(local::answer_error_keep(worker, client, s, e, facts)).await;
                }
            },
        };
        let head = std::mem::take(&mut s.out);
        let (res, head) = up.stream.write_all(head).await;
        s.out = head;
        if res.is_err() {
            if retryable(&up) {
                continue;
            }
            let e = ProxyError::UpstreamClosed;
            return Box::pin(local::answer_error_keep(worker, client, s, e, facts)).await;
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
                    return Box::pin(local::answer_error(client, s, ProxyError::AmbiguousFraming))
                        .await
                }
                // The upstream saw part of a body and loses the connection.
                Err(CopyError::TooLarge) => {
                    return Box::pin(local::answer_error(client, s, ProxyError::BodyTooLarge)).await
                }
                Err(CopyError::Sink) => {
                    return Box::pin(local::answer_error(client, s, ProxyError::UpstreamClosed))
                        .await
                }
            }
        }
        match read_response_head(&mut up, &mut s.resp, config.upstream_read_timeout).await {
            Ok(()) => break up,
            Err(ProxyError::UpstreamClosed) if retryable(&up) => continue,
            Err(e) => {
                // A body already sent on cannot be skipped: the connection ends.
                let close =
                    !facts.body.is_empty() || !facts.keep_alive || worker.drain.is_draining();
                return Box::pin(local::answer_error_with(client, s, e, facts, close)).await;
            }
        }
    };

    // Interim responses: 100 was ours to send; others go to HTTP/1.1 clients.
    while (100..200).contains(&s.resp.status) {
        if s.resp.status == 101 {
            // Only a switch to what was asked for (WebSocket) becomes a tunnel.
            if !upgrade || !is_only_websocket(&s.resp.headers) {
                let e = ProxyError::UpstreamInvalidResponse;
                return Box::pin(local::answer_error(client, s, e)).await;
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
            return Box::pin(local::answer_error(client, s, e)).await;
        }
    }

    let Ok(resp_body) = framing::response_body(&s.resp, facts.is_head) else {
        let e = ProxyError::UpstreamInvalidResponse;
        return Box::pin(local::answer_error_keep(worker, client, s, e, facts)).await;
    };
    let upstream_reusable = s.resp.keeps_alive() && resp_body != BodyLength::UntilClose;

    let info = request_info(client, &s.host, facts);
    let phases = s.state.chain.len();
    if let Some((replacement, outer)) =
        policy::run_response(table, &mut s.state, phases, &mut s.req, &mut s.resp, info)
    {
        // A policy replaced the response: its body is not wanted.
        if resp_body.is_empty() && upstream_reusable {
            worker.pool.put(upstream, up);
        }
        let answer = Ok(replacement);
        return Box::pin(local::answer_after(
            worker, client, s, table, answer, outer, facts,
        ))
        .await;
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
                    return Box::pin(local::answer_error_keep(worker, client, s, e, facts)).await;
                }
                Err(_) => {
                    let e = ProxyError::UpstreamTimeout;
                    return Box::pin(local::answer_error_keep(worker, client, s, e, facts)).await;
                }
            }
        }
    }

    let remove_chunking = facts.minor_version == 0 && resp_body == BodyLength::Chunked;
    // A draining worker tells every client it answers to go elsewhere next.
    let close = !facts.keep_alive
        || resp_body == BodyLength::UntilClose
        || remove_chunking
        || worker.drain.is_draining();
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
    s.answered = true;
    if write_all(&mut client.stream, &mut s.out).await.is_err() {
        return Next::Close;
    }
    crate::fault::trip(&s.req, "after-head");
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
        Ok(()) if upstream_reusable => worker.pool.put(upstream, up),
        Ok(()) => {}
        Err(_) => return Next::Close,
    }
    if close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// A new connection to `upstream`: dialled, or a stream of an agent's tunnel session.
async fn open<S: ClientStream>(
    worker: &Worker,
    client: &Client<S>,
    upstream: &Upstream,
) -> Result<UpstreamConn, ProxyError> {
    match upstream {
        Upstream::Dial(addr) => {
            UpstreamPool::connect(
                addr,
                worker.config.upstream_connect_timeout,
                &worker.upstream_tls,
            )
            .await
        }
        Upstream::Tunnel(endpoint) => {
            let peer = client.peer.to_string();
            let stream = crate::tunnel::open(worker, endpoint, &peer).await?;
            Ok(UpstreamConn::new(UpstreamStream::Tunnel(stream)))
        }
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
                    remove_from_upstream(&mut resp.headers);
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
        out.extend_from_slice(b"upgrade: websocket\r\nconnection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a head's `Upgrade` names exactly one protocol, WebSocket.
fn is_only_websocket(head: &HeaderBlock) -> bool {
    let mut values = head.get_all("upgrade");
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value.trim_ascii().eq_ignore_ascii_case(b"websocket")
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
    // The switch's own Upgrade and Connection fields go to the client; the other
    // connection fields do not.
    s.resp.headers.write_fields(&mut s.out, |name| {
        is_hop_by_hop(name)
            && !name.eq_ignore_ascii_case(b"connection")
            && !name.eq_ignore_ascii_case(b"upgrade")
    });
    s.answered = true;
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
