//! One client connection: serve its exchanges one after the other while it is kept
//! alive (pipelined requests are answered in order because they are served one at a
//! time), then close it or turn it into a byte tunnel after a protocol switch.
//!
//! What the connection keeps between requests is [`ConnState`] (who connected, TLS
//! facts, the endpoints whose `on_tcp_connect` ran); everything about one request
//! lives in [`Scratch`] and [`super::exchange`].

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};

use super::buf::ReadBuf;
use super::head::{HeadError, RequestHead, ResponseHead};
use crate::error::ProxyError;
use crate::policy::{ConnInfo, ConnState, RequestState};
use crate::routes::EndpointIdx;
use crate::upstream::UpstreamStream;
use crate::worker::Worker;

/// The read buffer a client connection starts with and returns to between requests
/// (nginx: client_header_buffer_size 1k); it grows while a head needs more.
const IDLE_READ_BUFFER: usize = 2 * 1024;

/// The most write-buffer capacity a connection keeps between requests.
const IDLE_WRITE_BUFFER: usize = 4 * 1024;

/// How long an idle keep-alive connection of a draining worker waits for a request
/// its client may already have sent, before it closes. A request that arrives in
/// time is answered with `Connection: close`, so a client never sees its request
/// meet a closed socket just because it was on the wire when the drain began.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// What happens to the client connection after an exchange.
#[derive(Debug)]
pub(super) enum Next {
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
pub(super) struct Client<S> {
    pub(super) stream: S,
    pub(super) rb: ReadBuf,
    pub(super) peer: SocketAddr,
    pub(super) state: ConnState,
    /// The URL port of the listener that accepted it.
    pub(super) url_port: u16,
}

/// Per-connection scratch space for one exchange, reused by every request on it.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) req: RequestHead,
    pub(super) resp: ResponseHead,
    pub(super) out: Vec<u8>,
    pub(super) body: Vec<u8>,
    pub(super) state: RequestState,
    /// The request's host, lowercased, once known (for the log line).
    pub(super) host: String,
    /// The endpoint where the request entered, once routed.
    pub(super) entry: Option<EndpointIdx>,
    /// Whether a request head was read (a head refused as malformed was not).
    pub(super) head: bool,
    /// Whether the exchange ended with a response (a close-connection or a dropped
    /// client ends it without one).
    pub(super) answered: bool,
    /// Bytes of the current exchange read from and written to the client.
    pub(super) received: u64,
    pub(super) sent: u64,
}

impl Scratch {
    /// Resets what one exchange records, before it starts.
    pub(super) fn begin(&mut self, head_len: usize) {
        self.head = head_len > 0;
        self.received = head_len as u64;
        self.sent = 0;
        self.host.clear();
        self.entry = None;
        self.answered = false;
        self.resp.local(0);
        self.state.chain.clear();
        self.state.forward_error = None;
    }
}

/// Serves a client connection until it closes or a request ends it.
pub(crate) async fn serve<S: ClientStream>(
    worker: Rc<Worker>,
    stream: S,
    peer: SocketAddr,
    url_port: u16,
    info: ConnInfo,
    fd: RawFd,
) {
    let mut client = Client {
        stream,
        rb: ReadBuf::with_capacity(IDLE_READ_BUFFER),
        peer,
        state: ConnState::new(info),
        url_port,
    };
    let mut scratch = Scratch::default();
    let mut first = true;
    loop {
        match super::exchange::serve_one(&worker, &mut client, &mut scratch, first).await {
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
