//! Which header fields travel through the proxy: none that describe one connection
//! (RFC 9110 §7.6.1) — the fixed hop-by-hop list and every field the message's own
//! `Connection` header names, removed as the head arrives — and, towards clients,
//! never `innergate-error-code` from an upstream. One rule for every head the data plane forwards, in both
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

/// Removes every field that the head's own `Connection` header names, except those
/// never taken away. Runs on a head as it arrives — a client's request before its
/// policy runs, an upstream's response before the response phases — so a sender can
/// only drop its own connection's fields, never one that a policy adds.
pub(crate) fn remove_nominated(head: &mut HeaderBlock) {
    // Tokens such as `close` or `keep-alive` name nothing to remove: no allocation
    // for the common heads.
    let named: SmallVec<[SmallVec<[u8; 24]>; 2]> = head
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"close")
                && !is_hop_by_hop(t)
                && !NEVER_NOMINATED.iter().any(|n| t.eq_ignore_ascii_case(n))
        })
        .map(SmallVec::from_slice)
        .collect();
    for name in named {
        head.remove_all(&name);
    }
}

/// Prepares an upstream's response head as it arrives: its connection's fields go,
/// and so does any `innergate-error-code`, which only the data plane may set — before
/// a response phase reads the head, and for interim (1xx) heads as for final ones.
pub(crate) fn remove_from_upstream(head: &mut HeaderBlock) {
    remove_nominated(head);
    head.remove_all(ERROR_CODE_HEADER.as_bytes());
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
        remove_nominated(&mut req.headers);
        let mut out = Vec::new();
        req.headers.write_fields(&mut out, is_hop_by_hop);
        assert_eq!(out, b"Host: a\r\nx-kept: 2\r\ncontent-length: 0\r\n");
    }
}
