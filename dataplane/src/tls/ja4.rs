//! The JA4 fingerprint of a ClientHello (`conn.tls.ja4_fingerprint`), as FoxIO's
//! specification defines it: `t13d1516h2_8daaf6152771_e5627efa2ab1` is the protocol,
//! version, SNI presence, cipher and extension counts and first ALPN; then a hash of
//! the sorted cipher suites; then a hash of the sorted extensions (without SNI and
//! ALPN) with the signature algorithms in their order. GREASE values never count.

use super::sni::{hello_parts, Cursor, HelloParts};

const SERVER_NAME: u16 = 0x0000;
const SIGNATURE_ALGORITHMS: u16 = 0x000d;
const ALPN: u16 = 0x0010;
const SUPPORTED_VERSIONS: u16 = 0x002b;

/// The fingerprint of the ClientHello body `hello`; "" when it does not parse.
pub(crate) fn fingerprint(hello: &[u8]) -> String {
    hello_parts(hello).map_or_else(|_| String::new(), |parts| of_parts(&parts))
}

/// GREASE (RFC 8701): `0x?a?a` with both bytes equal, sent to keep peers honest.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

fn u16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// The values of a `u16`-list extension body whose length prefix is `prefix` bytes.
fn listed(data: &[u8], prefix: usize) -> Vec<u16> {
    let body = data.get(prefix..).unwrap_or(&[]);
    u16s(body).filter(|v| !is_grease(*v)).collect()
}

fn of_parts(parts: &HelloParts<'_>) -> String {
    let ciphers: Vec<u16> = u16s(parts.cipher_suites)
        .filter(|c| !is_grease(*c))
        .collect();
    let extensions: Vec<u16> = parts
        .extensions
        .iter()
        .map(|(kind, _)| *kind)
        .filter(|k| !is_grease(*k))
        .collect();
    let data_of = |kind: u16| {
        parts
            .extensions
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
    };
    let version = data_of(SUPPORTED_VERSIONS)
        .map(|d| listed(d, 1))
        .and_then(|v| v.into_iter().max())
        .unwrap_or(parts.legacy_version);
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    };
    let sni = if extensions.contains(&SERVER_NAME) {
        'd'
    } else {
        'i'
    };
    let alpn = data_of(ALPN).and_then(first_alpn).unwrap_or_default();
    let a = format!(
        "t{version}{sni}{:02}{:02}{}",
        ciphers.len().min(99),
        extensions.len().min(99),
        alpn_mark(&alpn)
    );

    let mut sorted_ciphers = ciphers;
    sorted_ciphers.sort_unstable();
    let b = truncated_hash(&hex_list(&sorted_ciphers));

    let mut sorted_extensions: Vec<u16> = extensions
        .into_iter()
        .filter(|k| *k != SERVER_NAME && *k != ALPN)
        .collect();
    sorted_extensions.sort_unstable();
    let signatures = data_of(SIGNATURE_ALGORITHMS)
        .map(|d| listed(d, 2))
        .unwrap_or_default();
    let c = if sorted_extensions.is_empty() {
        "000000000000".to_string()
    } else {
        let mut text = hex_list(&sorted_extensions);
        if !signatures.is_empty() {
            text.push('_');
            text.push_str(&hex_list(&signatures));
        }
        truncated_hash(&text)
    };
    format!("{a}_{b}_{c}")
}

/// The first protocol of an ALPN extension body.
fn first_alpn(data: &[u8]) -> Option<Vec<u8>> {
    let mut c = Cursor(data);
    let list = c.u16().ok()?;
    let mut list = Cursor(c.take(list).ok()?);
    let len = list.u8().ok()?;
    list.take(len).ok().map(<[u8]>::to_vec)
}

/// Two characters for the first ALPN: its first and last, or "00" without one; the
/// first and last hex digits of its bytes where those are not alphanumeric.
fn alpn_mark(alpn: &[u8]) -> String {
    match (alpn.first(), alpn.last()) {
        (Some(&first), Some(&last))
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() =>
        {
            format!("{}{}", first as char, last as char)
        }
        (Some(&first), Some(&last)) => {
            let (hi, lo) = (format!("{first:02x}"), format!("{last:02x}"));
            format!("{}{}", &hi[..1], &lo[1..])
        }
        _ => "00".to_string(),
    }
}

fn hex_list(values: &[u16]) -> String {
    values
        .iter()
        .map(|v| format!("{v:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The first 12 hex digits of the SHA-256 of `text`; zeros for nothing.
fn truncated_hash(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
        out
    }

    /// A ClientHello body with these suites and extensions.
    fn body(suites: &[u16], extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0x03, 0x03];
        out.extend([7u8; 32]);
        out.push(0); // no session id
        out.extend(((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            out.extend(s.to_be_bytes());
        }
        out.extend([1, 0]); // null compression
        let all: Vec<u8> = extensions.concat();
        out.extend((all.len() as u16).to_be_bytes());
        out.extend(all);
        out
    }

    #[test]
    fn a_tls13_hello_with_grease_sni_and_alpn() {
        let sni = extension(0x0000, b"\x00\x0e\x00\x00\x0bexample.com");
        let alpn = extension(0x0010, b"\x00\x0c\x02h2\x08http/1.1");
        let versions = extension(0x002b, &[4, 0x1a, 0x1a, 0x03, 0x04]);
        let sigs = extension(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]);
        let groups = extension(0x000a, &[0, 2, 0, 0x1d]);
        let grease = extension(0x2a2a, &[]);
        let hello = body(
            &[0x3a3a, 0x1302, 0x1301, 0xc02f],
            &[grease, sni, alpn, versions, sigs, groups],
        );
        // Counts leave GREASE out; the hashes are of "1301,1302,c02f" and of
        // "000a,000d,002b_0403,0804" (SHA-256, first 12 hex digits).
        assert_eq!(
            fingerprint(&hello),
            format!(
                "t13d0305h2_{}_{}",
                truncated_hash("1301,1302,c02f"),
                truncated_hash("000a,000d,002b_0403,0804")
            )
        );
    }

    #[test]
    fn the_hashes_of_the_specifications_example() {
        // FoxIO's README: t13d1516h2_8daaf6152771_e5627efa2ab1.
        assert_eq!(
            truncated_hash(
                "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
            ),
            "8daaf6152771"
        );
        assert_eq!(
            truncated_hash(
                "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
                 0403,0804,0401,0503,0805,0501,0806,0601"
            ),
            "e5627efa2ab1"
        );
    }

    #[test]
    fn without_sni_alpn_or_extensions() {
        let hello = body(&[0x002f], &[]);
        assert_eq!(
            fingerprint(&hello),
            format!("t12i010000_{}_000000000000", truncated_hash("002f"))
        );
        assert_eq!(alpn_mark(b"\x01\xff"), "0f");
        assert_eq!(fingerprint(b"\x03"), "");
    }
}
