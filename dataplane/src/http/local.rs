//! Answers the data plane writes itself: what an action made (custom-response, deny,
//! redirect, basic-auth's 401, rate-limit's 429, …), after the response phases of the
//! endpoints the request passed through, and the data plane's own errors, which carry
//! `innergate-error-code` and a short text body.

use super::client::{request_info, Client, ClientStream, Next, RequestFacts, Scratch};
use super::framing::BodyLength;
use super::head::{write_decimal, ResponseHead};
use crate::error::ProxyError;
use crate::policy;
use crate::routes::RouteTable;
use crate::worker::Worker;
use innergate_table::policy::{LocalResponse, ERROR_CODE_HEADER};

use super::buf::write_all;

/// Answers with an action's response, after the response phases of the chain run
/// over it, or with the data plane's own error (over which no phase runs).
pub(super) async fn answer<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    table: &RouteTable,
    answer: Result<LocalResponse<'_>, ProxyError>,
    facts: RequestFacts,
) -> Next {
    let phases = s.state.chain.len();
    answer_after(worker, client, s, table, answer, phases, facts).await
}

/// As [`answer`], with the response phases of `chain[..phases]` only (a response
/// an `on_http_response` action made has passed the inner ones already).
pub(super) async fn answer_after<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    table: &RouteTable,
    answer: Result<LocalResponse<'_>, ProxyError>,
    mut phases: usize,
    facts: RequestFacts,
) -> Next {
    match answer {
        Ok(response) => {
            build(&response, &mut s.resp, &mut s.body);
            let info = request_info(client, &s.host, facts);
            while let Some((replacement, outer)) =
                policy::run_response(table, &mut s.state, phases, &mut s.req, &mut s.resp, info)
            {
                build(&replacement, &mut s.resp, &mut s.body);
                phases = outer;
            }
        }
        Err(error) => error_into(error, &mut s.resp, &mut s.body),
    }
    let close =
        !facts.keep_alive || worker.drain.is_draining() || !skip_unread_body(client, facts.body);
    send(client, s, facts, close).await
}

/// Answers an error and closes: the request could not be read reliably.
pub(super) async fn answer_error<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    error: ProxyError,
) -> Next {
    log_upstream_error(client, error);
    error_into(error, &mut s.resp, &mut s.body);
    send(client, s, RequestFacts::UNREADABLE, true).await
}

/// Answers an error before the request body was sent on; the connection stays open
/// when the body can be skipped.
pub(super) async fn answer_error_keep<S: ClientStream>(
    worker: &Worker,
    client: &mut Client<S>,
    s: &mut Scratch,
    error: ProxyError,
    facts: RequestFacts,
) -> Next {
    let close =
        !facts.keep_alive || worker.drain.is_draining() || !skip_unread_body(client, facts.body);
    answer_error_with(client, s, error, facts, close).await
}

/// Answers an error, closing the connection after it when `close` says so.
pub(super) async fn answer_error_with<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    error: ProxyError,
    facts: RequestFacts,
    close: bool,
) -> Next {
    log_upstream_error(client, error);
    error_into(error, &mut s.resp, &mut s.body);
    send(client, s, facts, close).await
}

fn log_upstream_error<S>(client: &Client<S>, error: ProxyError) {
    if error.side() == crate::error::Side::Upstream {
        log::debug!("{} for {}: {}", error.code(), client.peer, error.message());
    }
}

/// Makes `response` the one to send.
fn build(response: &LocalResponse<'_>, resp: &mut ResponseHead, body: &mut Vec<u8>) {
    resp.local(response.status);
    for (name, value) in &response.headers {
        resp.headers.append_bytes(name.as_bytes(), value.as_bytes());
    }
    body.clear();
    body.extend_from_slice(response.body.as_bytes());
}

/// Makes the data plane's own error the response to send.
fn error_into(error: ProxyError, resp: &mut ResponseHead, body: &mut Vec<u8>) {
    resp.local(error.status());
    resp.headers
        .append_bytes(b"content-type", b"text/plain; charset=utf-8");
    resp.headers
        .append_bytes(ERROR_CODE_HEADER.as_bytes(), error.code().as_bytes());
    body.clear();
    body.extend_from_slice(error.message().as_bytes());
    body.push(b'\n');
}

/// Skips a request body that was not sent on, when it is already buffered, so the
/// connection can serve the next request; `false` means the connection must close.
fn skip_unread_body<S>(client: &mut Client<S>, body: BodyLength) -> bool {
    match body {
        BodyLength::Empty => true,
        BodyLength::Fixed(n) if client.rb.len() as u64 >= n => {
            client.rb.consume(n as usize);
            true
        }
        _ => false,
    }
}

/// Writes `s.resp` and `s.body` with Content-Length.
async fn send<S: ClientStream>(
    client: &mut Client<S>,
    s: &mut Scratch,
    facts: RequestFacts,
    close: bool,
) -> Next {
    s.answered = true;
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

/// The `Connection` field a response to an HTTP/1.`minor_version` request needs.
pub(super) fn write_connection_header(out: &mut Vec<u8>, close: bool, minor_version: u8) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if minor_version == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}
