//! What one client connection and its exchanges are made of: the client side of the
//! connection, the scratch space an exchange fills, what the request head says, and
//! what happens to the connection after an exchange. Shared by the connection loop,
//! the exchange, local answers and the proxy; it imports none of them.

use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};

use super::buf::ReadBuf;
use super::framing::BodyLength;
use super::head::{RequestHead, ResponseHead};
use crate::policy::{ConnState, RequestInfo, RequestState};
use crate::routes::EndpointIdx;
use crate::upstream::UpstreamStream;

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

/// What the request head says about the exchange.
#[derive(Clone, Copy, Debug)]
pub(super) struct RequestFacts {
    pub(super) body: BodyLength,
    /// The most body bytes the endpoints of the chain accept (known once routed).
    pub(super) body_limit: u64,
    pub(super) keep_alive: bool,
    pub(super) is_head: bool,
    pub(super) minor_version: u8,
}

impl RequestFacts {
    /// For a request that could not be read reliably: answered, then closed.
    pub(super) const UNREADABLE: RequestFacts = RequestFacts {
        body: BodyLength::Empty,
        body_limit: u64::MAX,
        keep_alive: false,
        is_head: false,
        minor_version: 1,
    };
}

/// What expressions read of this request, besides its head.
pub(super) fn request_info<'a, S>(
    client: &'a Client<S>,
    host: &'a str,
    facts: RequestFacts,
) -> RequestInfo<'a> {
    RequestInfo {
        conn: &client.state.info,
        scheme: client.state.info.scheme,
        host,
        content_length: match facts.body {
            BodyLength::Empty => 0,
            BodyLength::Fixed(n) => n as i64,
            BodyLength::Chunked | BodyLength::UntilClose => -1,
        },
    }
}
