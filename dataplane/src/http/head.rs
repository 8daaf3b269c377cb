//! Parsed request and response heads.
//!
//! A head keeps the bytes it was parsed from in its own storage and refers to method,
//! target and header fields by offsets into it. Headers a policy adds are appended to
//! the same storage, so a head costs no allocation per request once its storage has
//! grown, and the fields keep their order.

use std::mem::MaybeUninit;

use innergate_table::policy::actions::HeadersMut;
use smallvec::SmallVec;

/// A byte range in a head's storage.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Clone, Copy, Debug)]
struct Field {
    name: Span,
    value: Span,
}

/// Header fields in received order, over one storage buffer.
#[derive(Debug, Default)]
pub(crate) struct HeaderBlock {
    storage: Vec<u8>,
    fields: SmallVec<[Field; 24]>,
}

impl HeaderBlock {
    fn clear(&mut self) {
        self.storage.clear();
        self.fields.clear();
    }

    fn text(&self, span: Span) -> &[u8] {
        &self.storage[span.start as usize..span.end as usize]
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.storage.len() as u32;
        self.storage.extend_from_slice(bytes);
        Span {
            start,
            end: self.storage.len() as u32,
        }
    }

    /// Every field as (name, value).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (self.text(f.name), self.text(f.value)))
    }

    /// Values of every field called `name` (case-insensitive).
    pub(crate) fn get_all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether a comma-separated header `name` lists `token` (case-insensitive).
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Appends a field.
    pub(crate) fn append_bytes(&mut self, name: &[u8], value: &[u8]) {
        let name = self.push_bytes(name);
        let value = self.push_bytes(value);
        self.fields.push(Field { name, value });
    }

    /// Removes every field called `name`.
    pub(crate) fn remove_all(&mut self, name: &[u8]) {
        let storage = &self.storage;
        self.fields.retain(|f| {
            !storage[f.name.start as usize..f.name.end as usize].eq_ignore_ascii_case(name)
        });
    }

    /// Copies the fields of an httparse head, which must point into `raw`, a buffer
    /// that `self.storage` holds a copy of from offset `base`.
    fn take_fields(&mut self, raw: &[u8], base: usize, headers: &[httparse::Header<'_>]) {
        let at = |s: &[u8]| {
            let start = (s.as_ptr() as usize - raw.as_ptr() as usize + base) as u32;
            Span {
                start,
                end: start + s.len() as u32,
            }
        };
        for h in headers {
            self.fields.push(Field {
                name: at(h.name.as_bytes()),
                value: at(h.value),
            });
        }
    }

    /// Writes every field as `name: value\r\n`, skipping those `skip` picks.
    pub(crate) fn write_fields(&self, out: &mut Vec<u8>, mut skip: impl FnMut(&[u8]) -> bool) {
        for (name, value) in self.iter() {
            if skip(name) {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl HeadersMut for HeaderBlock {
    fn append(&mut self, name: &str, value: &str) {
        self.append_bytes(name.as_bytes(), value.as_bytes());
    }

    fn remove(&mut self, name: &str) -> bool {
        let before = self.fields.len();
        self.remove_all(name.as_bytes());
        self.fields.len() != before
    }
}

/// Why a head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not valid HTTP/1.x.
    Malformed,
    /// More header fields than allowed.
    TooManyHeaders,
}

/// The most header fields a head may carry.
pub(crate) const MAX_HEADERS: usize = 100;

/// An HTTP/1.x request head.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    pub(crate) headers: HeaderBlock,
    method: Span,
    target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
}

impl RequestHead {
    /// Parses a complete head at the start of `buf`: `Ok(Some(len))` when complete,
    /// `Ok(None)` when more bytes are needed.
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, HeadError> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(_) => return Err(HeadError::Malformed),
        };
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            return Err(HeadError::Malformed);
        };
        self.headers.clear();
        self.headers.storage.extend_from_slice(&buf[..len]);
        let at = |s: &str| {
            let start = (s.as_ptr() as usize - buf.as_ptr() as usize) as u32;
            Span {
                start,
                end: start + s.len() as u32,
            }
        };
        self.method = at(method);
        self.target = at(path);
        self.minor_version = version;
        self.headers.take_fields(buf, 0, req.headers);
        Ok(Some(len))
    }

    pub(crate) fn method(&self) -> &[u8] {
        self.headers.text(self.method)
    }

    pub(crate) fn target(&self) -> &[u8] {
        self.headers.text(self.target)
    }

    /// Turns an absolute-form target (`http://host/path`) into origin-form (`/path`).
    /// `false` when its authority names another host than `host` (the Host header's,
    /// lowercased, without port): such a request is refused as ambiguous.
    pub(crate) fn normalize_absolute_target(&mut self, host: &str) -> bool {
        let target = self.target();
        let scheme_len = if target.len() >= 7 && target[..7].eq_ignore_ascii_case(b"http://") {
            7
        } else if target.len() >= 8 && target[..8].eq_ignore_ascii_case(b"https://") {
            8
        } else {
            return true;
        };
        let rest = &target[scheme_len..];
        let end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        let name = match authority.iter().rposition(|&b| b == b':') {
            Some(i) if authority[i + 1..].iter().all(u8::is_ascii_digit) => &authority[..i],
            _ => authority,
        };
        let name = name.strip_suffix(b".").unwrap_or(name);
        if !name.eq_ignore_ascii_case(host.as_bytes()) || authority.contains(&b'@') {
            return false;
        }
        let origin = match &rest[end..] {
            [] => "/".to_string(),
            [b'?', ..] => format!("/{}", String::from_utf8_lossy(&rest[end..])),
            path => String::from_utf8_lossy(path).into_owned(),
        };
        self.set_target(&origin);
        true
    }

    /// Replaces the target (`url-rewrite`); the new bytes join the head's storage.
    pub(crate) fn set_target(&mut self, target: &str) {
        self.target = self.headers.push_bytes(target.as_bytes());
    }

    pub(crate) fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// Whether the client asks to keep the connection open after this exchange.
    pub(crate) fn wants_keep_alive(&self) -> bool {
        if self.minor_version == 0 {
            self.headers.has_token("connection", "keep-alive")
        } else {
            !self.headers.has_token("connection", "close")
        }
    }

    /// The request's host, lowercased into `out`, without a port. `None` when there is
    /// none or several, or it is not a valid host.
    pub(crate) fn host<'a>(&self, out: &'a mut [u8; 256]) -> Option<&'a str> {
        let mut hosts = self.headers.get_all("host");
        let raw = hosts.next()?;
        if hosts.next().is_some() {
            return None;
        }
        let name = if raw.first() == Some(&b'[') {
            // An IPv6 literal: keep the brackets, drop a port.
            let end = raw.iter().position(|&b| b == b']')?;
            &raw[..=end]
        } else {
            match raw.iter().rposition(|&b| b == b':') {
                Some(i) if raw[i + 1..].iter().all(u8::is_ascii_digit) => &raw[..i],
                Some(_) => return None,
                None => raw,
            }
        };
        let valid = |b: &u8| b.is_ascii_alphanumeric() || b"-._[]:".contains(b);
        if name.is_empty() || name.len() > out.len() || !name.iter().all(valid) {
            return None;
        }
        let out = &mut out[..name.len()];
        for (o, b) in out.iter_mut().zip(name) {
            *o = b.to_ascii_lowercase();
        }
        let name = std::str::from_utf8(out).ok()?;
        Some(name.strip_suffix('.').unwrap_or(name))
    }
}

/// An HTTP/1.x response head.
#[derive(Debug, Default)]
pub(crate) struct ResponseHead {
    pub(crate) headers: HeaderBlock,
    pub(crate) status: u16,
    reason: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
}

impl ResponseHead {
    /// Parses a complete head at the start of `buf`, as [`RequestHead::parse`].
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, HeadError> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(_) => return Err(HeadError::Malformed),
        };
        let (Some(version), Some(status)) = (res.version, res.code) else {
            return Err(HeadError::Malformed);
        };
        self.headers.clear();
        self.headers.storage.extend_from_slice(&buf[..len]);
        let reason = res.reason.unwrap_or("");
        self.reason = if reason.is_empty() {
            Span::default()
        } else {
            let start = (reason.as_ptr() as usize - buf.as_ptr() as usize) as u32;
            Span {
                start,
                end: start + reason.len() as u32,
            }
        };
        self.status = status;
        self.minor_version = version;
        self.headers.take_fields(buf, 0, res.headers);
        Ok(Some(len))
    }

    /// A response made by the data plane itself.
    pub(crate) fn local(&mut self, status: u16) {
        self.headers.clear();
        self.status = status;
        self.reason = Span::default();
        self.minor_version = 1;
    }

    /// The reason phrase, the standard one when the head has none.
    pub(crate) fn reason(&self) -> &[u8] {
        match self.headers.text(self.reason) {
            b"" => canonical_reason(self.status).as_bytes(),
            r => r,
        }
    }

    /// Whether the upstream lets the connection be reused after this response.
    pub(crate) fn keeps_alive(&self) -> bool {
        if self.minor_version == 0 {
            self.headers.has_token("connection", "keep-alive")
        } else {
            !self.headers.has_token("connection", "close")
        }
    }

    /// Writes `HTTP/1.1 status reason\r\n`.
    pub(crate) fn write_status_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        let mut digits = [b'0'; 3];
        let mut s = self.status.min(999);
        for d in digits.iter_mut().rev() {
            *d = b'0' + (s % 10) as u8;
            s /= 10;
        }
        out.extend_from_slice(&digits);
        out.push(b' ');
        out.extend_from_slice(self.reason());
        out.extend_from_slice(b"\r\n");
    }
}

/// The standard reason phrase of a status.
pub(crate) fn canonical_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        508 => "Loop Detected",
        _ => "Status",
    }
}

/// Writes a decimal number without allocating.
pub(crate) fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parse_and_edit() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: Api.Example.com:8080\r\nX-A: 1\r\n\r\nBODY";
        let mut req = RequestHead::default();
        assert_eq!(req.parse(&raw[..10]), Ok(None));
        assert_eq!(req.parse(raw), Ok(Some(raw.len() - 4)));
        assert_eq!(req.method(), b"GET");
        assert_eq!(req.target(), b"/a?b=1");
        let mut buf = [0u8; 256];
        assert_eq!(req.host(&mut buf), Some("api.example.com"));
        req.headers.append("x-b", "2");
        req.headers.remove("x-a");
        let mut out = Vec::new();
        req.headers.write_fields(&mut out, |_| false);
        assert_eq!(out, b"Host: Api.Example.com:8080\r\nx-b: 2\r\n");
    }

    #[test]
    fn absolute_targets_become_origin_form() {
        let normalized = |target: &str, host: &str| {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let mut req = RequestHead::default();
            req.parse(raw.as_bytes()).unwrap().unwrap();
            req.normalize_absolute_target(host)
                .then(|| String::from_utf8(req.target().to_vec()).unwrap())
        };
        assert_eq!(normalized("/a?b", "a.com"), Some("/a?b".into()));
        assert_eq!(
            normalized("http://A.com:80/x?y=1", "a.com"),
            Some("/x?y=1".into())
        );
        assert_eq!(normalized("https://a.com", "a.com"), Some("/".into()));
        assert_eq!(normalized("http://a.com?q", "a.com"), Some("/?q".into()));
        assert_eq!(normalized("http://evil.com/x", "a.com"), None);
        assert_eq!(normalized("http://u@a.com/x", "a.com"), None);
    }

    #[test]
    fn hosts() {
        let host = |h: &str| {
            let raw = format!("GET / HTTP/1.1\r\n{h}\r\n\r\n");
            let mut req = RequestHead::default();
            req.parse(raw.as_bytes()).unwrap().unwrap();
            let mut buf = [0u8; 256];
            req.host(&mut buf).map(str::to_string)
        };
        assert_eq!(host("Host: a.com."), Some("a.com".into()));
        assert_eq!(host("Host: [::1]:80"), Some("[::1]".into()));
        assert_eq!(host("Host: a.com\r\nHost: b.com"), None);
        assert_eq!(host("X: y"), None);
        assert_eq!(host("Host: a.com:x"), None);
        assert_eq!(host("Host: a b"), None);
    }

    #[test]
    fn too_many_headers() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            raw.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(
            RequestHead::default().parse(&raw),
            Err(HeadError::TooManyHeaders)
        );
    }

    #[test]
    fn response_status_line() {
        let mut res = ResponseHead::default();
        res.parse(b"HTTP/1.1 204 \r\n\r\n").unwrap().unwrap();
        let mut out = Vec::new();
        res.write_status_line(&mut out);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n");
        let mut n = Vec::new();
        write_decimal(&mut n, 1048576);
        assert_eq!(n, b"1048576");
    }
}
