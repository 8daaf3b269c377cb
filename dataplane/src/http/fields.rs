//! Which header fields travel through the proxy: none that describe one connection
//! (RFC 9110 §7.6.1) — the fixed hop-by-hop list and every field the message's own
//! `Connection` header names — and, towards clients, never `innergate-error-code`
//! from an upstream. One rule for every head the data plane forwards, in both
//! directions, interim (1xx) heads included.

use smallvec::SmallVec;

use super::head::HeaderBlock;
use innergate_table::policy::ERROR_CODE_HEADER;

/// Fields that describe one connection whatever the message says.
const HOP_BY_HOP: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
];

/// Fields a `Connection` header may not take away: they frame the message or name its
/// host, and dropping them would make the next hop read the bytes differently than
/// the proxy did.
const NEVER_NOMINATED: [&[u8]; 3] = [b"host", b"content-length", b"transfer-encoding"];

/// Whether `name` is on the fixed hop-by-hop list.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The fields of one head that must not be forwarded.
#[derive(Debug)]
pub(crate) struct ConnectionFields<'h> {
    /// Names the head's `Connection` header lists (lowercase or not, as sent).
    nominated: SmallVec<[&'h [u8]; 4]>,
    /// Whether `innergate-error-code` goes too (upstream responses).
    error_code: bool,
}

impl<'h> ConnectionFields<'h> {
    /// The connection fields of a request head.
    pub(crate) fn of_request(head: &'h HeaderBlock) -> Self {
        ConnectionFields {
            nominated: nominated(head),
            error_code: false,
        }
    }

    /// The connection fields of an upstream's response head, plus the error-code
    /// header that only the data plane may set.
    pub(crate) fn of_response(head: &'h HeaderBlock) -> Self {
        ConnectionFields {
            nominated: nominated(head),
            error_code: true,
        }
    }

    /// Whether field `name` stays behind.
    pub(crate) fn skips(&self, name: &[u8]) -> bool {
        is_hop_by_hop(name)
            || (self.error_code && name.eq_ignore_ascii_case(ERROR_CODE_HEADER.as_bytes()))
            || self.nominated.iter().any(|n| name.eq_ignore_ascii_case(n))
    }
}

fn nominated(head: &HeaderBlock) -> SmallVec<[&[u8]; 4]> {
    head.get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !NEVER_NOMINATED.iter().any(|n| t.eq_ignore_ascii_case(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::RequestHead;

    #[test]
    fn connection_names_fields_that_stay_behind() {
        let mut req = RequestHead::default();
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret , content-length\r\nx-secret: 1\r\nx-kept: 2\r\ncontent-length: 0\r\nTE: trailers\r\n\r\n";
        req.parse(raw).unwrap().unwrap();
        let fields = ConnectionFields::of_request(&req.headers);
        let mut out = Vec::new();
        req.headers.write_fields(&mut out, |n| fields.skips(n));
        assert_eq!(out, b"Host: a\r\nx-kept: 2\r\ncontent-length: 0\r\n");
    }
}
