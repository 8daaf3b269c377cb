//! Errors the data plane answers for itself. Each maps to one status and one
//! `innergate-error-code`; none allocates. Refusals that policy actions make (deny,
//! restrict-ips, basic-auth, rate-limit) are those actions' own, with their codes.

/// Which side of the proxy an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The client sent something wrong.
    Client,
    /// The upstream failed.
    Upstream,
    /// The endpoint configuration (routing, policy) decided.
    Internal,
}

/// An error answered with an HTTP response made by the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ProxyError {
    /// The request is not valid HTTP/1.x.
    MalformedRequest,
    /// The request head exceeds the size or field-count limit.
    HeadersTooLarge,
    /// Content-Length / Transfer-Encoding are conflicting or invalid.
    AmbiguousFraming,
    /// The request has no usable Host.
    MissingHost,
    /// The request body is larger than an endpoint of the chain accepts.
    BodyTooLarge,
    /// No endpoint serves this host (or the host is internal).
    NoEndpoint,
    /// forward-internal named no endpoint of the account.
    ForwardTargetMissing,
    /// forward-internal crossed protocol families.
    ForwardWrongFamily,
    /// A dynamic forward-internal URL did not render to an internal URL.
    ForwardInvalidTarget,
    /// forward-internal came back to an endpoint already in the chain.
    ForwardLoop,
    /// forward-internal went deeper than the hop limit.
    ForwardTooManyHops,
    /// A cloud endpoint's policy let a request through without ending it.
    PolicyFellThrough,
    /// An https request names a host that another endpoint than its TLS handshake's
    /// serves.
    Misdirected,
    /// The data plane failed while serving the request (a bug, confined to it).
    Internal,
    /// The upstream refused the connection or could not be reached.
    UpstreamUnreachable,
    /// The upstream did not answer within the timeout.
    UpstreamTimeout,
    /// The upstream answered with something that is not valid HTTP/1.x.
    UpstreamInvalidResponse,
    /// The upstream closed the connection before a complete response head.
    UpstreamClosed,
    /// The upstream host name did not resolve when the table was applied.
    UpstreamUnresolved,
    /// The TLS handshake with the upstream failed (certificate, protocol).
    UpstreamTlsFailed,
    /// A tunnelled endpoint has no agent session left.
    AgentOffline,
}

impl ProxyError {
    /// The HTTP status of the answer.
    pub(crate) fn status(self) -> u16 {
        use ProxyError::*;
        match self {
            MalformedRequest | AmbiguousFraming | MissingHost => 400,
            HeadersTooLarge => 431,
            BodyTooLarge => 413,
            NoEndpoint | ForwardTargetMissing | ForwardInvalidTarget | AgentOffline => 404,
            ForwardLoop | ForwardTooManyHops => 508,
            Misdirected => 421,
            PolicyFellThrough | Internal => 500,
            ForwardWrongFamily
            | UpstreamUnreachable
            | UpstreamInvalidResponse
            | UpstreamClosed
            | UpstreamUnresolved
            | UpstreamTlsFailed => 502,
            UpstreamTimeout => 504,
        }
    }

    /// The stable code sent as `innergate-error-code`.
    pub(crate) fn code(self) -> &'static str {
        use ProxyError::*;
        match self {
            MalformedRequest => "ERR_IG_1000",
            HeadersTooLarge => "ERR_IG_1001",
            AmbiguousFraming => "ERR_IG_1002",
            MissingHost => "ERR_IG_1003",
            BodyTooLarge => "ERR_IG_1004",
            NoEndpoint | ForwardTargetMissing | AgentOffline => "ERR_IG_3200",
            ForwardWrongFamily => "ERR_IG_3201",
            ForwardInvalidTarget => "ERR_IG_3204",
            ForwardLoop => "ERR_IG_3202",
            ForwardTooManyHops => "ERR_IG_3203",
            PolicyFellThrough => "ERR_IG_3210",
            Misdirected => "ERR_IG_1005",
            Internal => "ERR_IG_5000",
            UpstreamUnreachable => "ERR_IG_3004",
            UpstreamTimeout => "ERR_IG_3005",
            UpstreamInvalidResponse => "ERR_IG_3006",
            UpstreamClosed => "ERR_IG_3007",
            UpstreamUnresolved => "ERR_IG_3008",
            UpstreamTlsFailed => "ERR_IG_3009",
        }
    }

    /// A short text body for a person.
    pub(crate) fn message(self) -> &'static str {
        use ProxyError::*;
        match self {
            MalformedRequest => "malformed HTTP request",
            HeadersTooLarge => "request header fields too large",
            AmbiguousFraming => "invalid or conflicting Content-Length / Transfer-Encoding",
            MissingHost => "missing, repeated or invalid Host header",
            BodyTooLarge => "request body larger than the endpoint accepts",
            NoEndpoint => "endpoint is offline: no endpoint serves this host",
            ForwardTargetMissing => "endpoint is offline: forward-internal target not found",
            ForwardWrongFamily => "forward-internal target is of another protocol family",
            ForwardInvalidTarget => "forward-internal url is not an internal URL",
            ForwardLoop => "forward-internal loop detected",
            ForwardTooManyHops => "forward-internal chain exceeds 10 hops",
            PolicyFellThrough => "the endpoint's traffic policy did not handle the request",
            Misdirected => "this connection is for another host: open a new one for this host",
            Internal => "internal error while serving the request",
            UpstreamUnreachable => "upstream refused the connection or is unreachable",
            UpstreamTimeout => "upstream did not answer in time",
            UpstreamInvalidResponse => "upstream sent an invalid HTTP response",
            UpstreamClosed => "upstream closed the connection without a response",
            UpstreamUnresolved => "upstream host name could not be resolved",
            UpstreamTlsFailed => "TLS handshake with the upstream failed",
            AgentOffline => "endpoint is offline: no agent session serves it",
        }
    }

    /// Which side failed.
    pub(crate) fn side(self) -> Side {
        use ProxyError::*;
        match self {
            MalformedRequest | HeadersTooLarge | AmbiguousFraming | MissingHost | BodyTooLarge
            | Misdirected => Side::Client,
            UpstreamUnreachable
            | UpstreamTimeout
            | UpstreamInvalidResponse
            | UpstreamClosed
            | UpstreamUnresolved
            | UpstreamTlsFailed => Side::Upstream,
            _ => Side::Internal,
        }
    }
}
