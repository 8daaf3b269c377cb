//! Reads a TLS ClientHello without terminating TLS: its server name, for tls
//! endpoints routed by SNI (passthrough), and its parts for the JA4 fingerprint. It
//! judges nothing: versions, ciphers and extensions are the upstream's business.

/// The most handshake bytes a ClientHello may take before it is refused.
const MAX_HELLO: usize = 64 * 1024;

/// Why the bytes are not a ClientHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotClientHello;

/// The SNI of the ClientHello at the start of `buf`: `Ok(None)` when more bytes are
/// needed, `Ok(Some(None))` for a complete hello without SNI.
#[doc(hidden)]
pub fn client_hello_sni(buf: &[u8]) -> Result<Option<Option<String>>, NotClientHello> {
    match client_hello_message(buf)? {
        Some(body) => parse_hello(&body).map(Some),
        None => Ok(None),
    }
}

/// The body of the ClientHello handshake message at the start of `buf` (gathered
/// from the records it spans): `Ok(None)` when more bytes are needed.
pub(crate) fn client_hello_message(buf: &[u8]) -> Result<Option<Vec<u8>>, NotClientHello> {
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Ok(None);
        }
        let (content_type, major, length) = (
            rest[0],
            rest[1],
            usize::from(u16::from_be_bytes([rest[3], rest[4]])),
        );
        if content_type != 0x16 || major != 3 || length == 0 || length > (1 << 14) + 2048 {
            return Err(NotClientHello);
        }
        if rest.len() < 5 + length {
            return Ok(None);
        }
        handshake.extend_from_slice(&rest[5..5 + length]);
        rest = &rest[5 + length..];
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Err(NotClientHello);
            }
            let body = usize::from(handshake[1]) << 16
                | usize::from(handshake[2]) << 8
                | usize::from(handshake[3]);
            if body > MAX_HELLO {
                return Err(NotClientHello);
            }
            if handshake.len() >= 4 + body {
                handshake.truncate(4 + body);
                handshake.drain(..4);
                return Ok(Some(handshake));
            }
        }
    }
}

/// The parts of a ClientHello body that fingerprints read, borrowed from it.
pub(crate) struct HelloParts<'a> {
    pub(crate) legacy_version: u16,
    pub(crate) cipher_suites: &'a [u8],
    /// Each extension's type and data, in the order sent.
    pub(crate) extensions: Vec<(u16, &'a [u8])>,
}

/// Splits a ClientHello body into its parts.
pub(crate) fn hello_parts(body: &[u8]) -> Result<HelloParts<'_>, NotClientHello> {
    let mut c = Cursor(body);
    let legacy_version = c.u16()? as u16;
    c.take(32)?; // random
    let session = c.u8()?;
    c.take(session)?;
    let suites = c.u16()?;
    let cipher_suites = c.take(suites)?;
    let compression = c.u8()?;
    c.take(compression)?;
    let mut extensions = Vec::new();
    if !c.0.is_empty() {
        let len = c.u16()?;
        let mut ext = Cursor(c.take(len)?);
        while !ext.0.is_empty() {
            let (kind, len) = (ext.u16()? as u16, ext.u16()?);
            extensions.push((kind, ext.take(len)?));
        }
    }
    Ok(HelloParts {
        legacy_version,
        cipher_suites,
        extensions,
    })
}

pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], NotClientHello> {
        if self.0.len() < n {
            return Err(NotClientHello);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<usize, NotClientHello> {
        Ok(usize::from(self.take(1)?[0]))
    }
    pub(crate) fn u16(&mut self) -> Result<usize, NotClientHello> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

fn parse_hello(body: &[u8]) -> Result<Option<String>, NotClientHello> {
    let parts = hello_parts(body)?;
    let Some((_, data)) = parts.extensions.iter().find(|(kind, _)| *kind == 0) else {
        return Ok(None);
    };
    let mut names = Cursor(data);
    let list = names.u16()?;
    let mut list = Cursor(names.take(list)?);
    while !list.0.is_empty() {
        let (name_type, len) = (list.u8()?, list.u16()?);
        let name = list.take(len)?;
        if name_type == 0 {
            let valid = !name.is_empty()
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.');
            if !valid {
                return Err(NotClientHello);
            }
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            return Ok(Some(name.trim_end_matches('.').to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as record bytes, with `sni` when given.
    pub(crate) fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[9; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        let mut extensions = Vec::new();
        if let Some(name) = sni {
            let mut entry = vec![0];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name.as_bytes());
            let mut data = (entry.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&entry);
            extensions.extend_from_slice(&[0, 0]);
            extensions.extend_from_slice(&(data.len() as u16).to_be_bytes());
            extensions.extend_from_slice(&data);
        }
        extensions.extend_from_slice(&[0, 0x0d, 0, 4, 0, 2, 0x08, 0x04]);
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut handshake = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        handshake.extend_from_slice(&body);
        let mut record = vec![0x16, 3, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn finds_the_name_whole_and_in_pieces() {
        let bytes = hello(Some("App.Example.com"));
        assert_eq!(
            client_hello_sni(&bytes),
            Ok(Some(Some("app.example.com".into())))
        );
        for cut in 0..bytes.len() {
            assert_eq!(client_hello_sni(&bytes[..cut]), Ok(None), "prefix {cut}");
        }
        assert_eq!(client_hello_sni(&hello(None)), Ok(Some(None)));
    }

    #[test]
    fn a_hello_split_over_two_records() {
        let one = hello(Some("split.example.com"));
        let handshake = &one[5..];
        let (a, b) = handshake.split_at(20);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(
            client_hello_sni(&two),
            Ok(Some(Some("split.example.com".into())))
        );
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert_eq!(
            client_hello_sni(b"GET / HTTP/1.1\r\n\r\n"),
            Err(NotClientHello)
        );
        assert_eq!(client_hello_sni(&[0x16, 3, 1, 0, 0]), Err(NotClientHello));
        let mut server_hello = hello(Some("a.com"));
        server_hello[5] = 2;
        assert_eq!(client_hello_sni(&server_hello), Err(NotClientHello));
        assert_eq!(
            client_hello_sni(&hello(Some("a b.com"))),
            Err(NotClientHello)
        );
        assert_eq!(
            client_hello_sni(&hello(Some("a\0.com"))),
            Err(NotClientHello)
        );
    }
}
