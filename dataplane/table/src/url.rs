//! Endpoint URLs (SPEC §2): `scheme://host[:port]`, parsed once into typed values.
//!
//! Everything a user can type as an endpoint URL goes through [`EndpointUrl::parse`];
//! the rest of the system only ever sees the parsed form, with the host lowercased and
//! the default port filled in.

use std::fmt;

/// The protocol of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Plain HTTP/1.x.
    Http,
    /// HTTP/1.x inside TLS terminated by the data plane.
    Https,
    /// Raw TCP bytes, routed by port.
    Tcp,
    /// TLS routed by SNI, passed through unless a policy terminates it.
    Tls,
}

/// Which forward-internal targets an endpoint may reach (SPEC §5: same family only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `http` and `https`: requests.
    Http,
    /// `tcp` and `tls`: connections.
    Stream,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        }
    }

    /// The port used when a URL names none; `tcp` has none.
    pub fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http => Some(80),
            Scheme::Https | Scheme::Tls => Some(443),
            Scheme::Tcp => None,
        }
    }

    /// The forwarding family of this scheme.
    pub fn family(self) -> Family {
        match self {
            Scheme::Http | Scheme::Https => Family::Http,
            Scheme::Tcp | Scheme::Tls => Family::Stream,
        }
    }

    fn from_str(s: &str) -> Option<Scheme> {
        Some(match s.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            _ => return None,
        })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host pattern: an exact name or a leading wildcard.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `api.example.com`, lowercased.
    Exact(String),
    /// `*.example.com`, stored as the suffix `example.com`; matches every depth below it
    /// but not the suffix itself.
    Wildcard(String),
}

impl HostPattern {
    /// Whether `host` (already lowercased) matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// The name without any wildcard label.
    pub fn name(&self) -> &str {
        match self {
            HostPattern::Exact(h) | HostPattern::Wildcard(h) => h,
        }
    }

    /// Whether the host is in the `.internal` namespace.
    pub fn is_internal(&self) -> bool {
        let name = self.name();
        name == "internal" || name.ends_with(".internal")
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(h) => write!(f, "*.{h}"),
        }
    }
}

/// A parsed endpoint URL with the default port filled in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointUrl {
    /// The protocol.
    pub scheme: Scheme,
    /// The host pattern, lowercased.
    pub host: HostPattern,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

/// Why a URL was refused. Every message names the rule that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL was empty.
    #[error("the URL is empty")]
    Empty,
    /// The scheme is not one of http, https, tcp, tls.
    #[error("unsupported scheme `{0}`: use http, https, tcp or tls")]
    UnsupportedScheme(String),
    /// The URL carries a path, query, fragment or user info.
    #[error("an endpoint URL may not have a {0}: use scheme://host[:port]")]
    ExtraPart(&'static str),
    /// No host was given.
    #[error("the URL has no host")]
    MissingHost,
    /// The host is not DNS-shaped.
    #[error(
        "invalid host `{0}`: use labels of letters, digits and `-`, optionally starting with `*.`"
    )]
    InvalidHost(String),
    /// The port is not a number in 1–65535.
    #[error("invalid port `{0}`: use a number from 1 to 65535")]
    InvalidPort(String),
    /// A tcp URL without a port.
    #[error("a tcp URL must name a port (tcp://host:PORT)")]
    MissingPort,
    /// An internal host with more than 5 labels before `internal`.
    #[error("internal host `{0}` has more than 5 labels before `.internal`")]
    TooManyInternalLabels(String),
    /// The host is `internal` alone or `*.internal`.
    #[error("internal host `{0}` needs a name before `.internal`")]
    BareInternal(String),
}

impl EndpointUrl {
    /// Parses `scheme://host[:port]`; no scheme means `https://`.
    pub fn parse(input: &str) -> Result<EndpointUrl, UrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        let (scheme, rest) = match input.split_once("://") {
            Some((s, rest)) => (
                Scheme::from_str(s).ok_or_else(|| UrlError::UnsupportedScheme(s.to_string()))?,
                rest,
            ),
            None => (Scheme::Https, input),
        };
        if rest.contains('@') {
            return Err(UrlError::ExtraPart("user info"));
        }
        if let Some(i) = rest.find(['/', '?', '#']) {
            let part = match rest.as_bytes()[i] {
                b'/' if rest[i..] == *"/" => "trailing slash",
                b'/' => "path",
                b'?' => "query",
                _ => "fragment",
            };
            return Err(UrlError::ExtraPart(part));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let port = match port {
            Some(p) => parse_port(p)?,
            None => scheme.default_port().ok_or(UrlError::MissingPort)?,
        };
        let host = parse_host(host)?;
        if host.is_internal() {
            check_internal_host(&host)?;
        }
        Ok(EndpointUrl { scheme, host, port })
    }

    /// Whether the host is in the `.internal` namespace.
    pub fn is_internal(&self) -> bool {
        self.host.is_internal()
    }
}

impl fmt::Display for EndpointUrl {
    /// The canonical form: the port is written only when it is not the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.scheme.default_port() != Some(self.port) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::InvalidPort(p.to_string()));
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UrlError::InvalidPort(p.to_string())),
    }
}

/// Parses a DNS-shaped host with an optional leading `*.` label, lowercasing it.
pub fn parse_host(host: &str) -> Result<HostPattern, UrlError> {
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let lower = host.to_ascii_lowercase();
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(UrlError::InvalidHost(host.to_string()));
    }
    Ok(if wildcard {
        HostPattern::Wildcard(name.to_string())
    } else {
        HostPattern::Exact(name.to_string())
    })
}

fn check_internal_host(host: &HostPattern) -> Result<(), UrlError> {
    let name = host.name();
    if name == "internal" {
        return Err(UrlError::BareInternal(host.to_string()));
    }
    let mut labels = name.split('.').count() - 1;
    if matches!(host, HostPattern::Wildcard(_)) {
        labels += 1;
    }
    if labels > 5 {
        return Err(UrlError::TooManyInternalLabels(host.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> EndpointUrl {
        EndpointUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn defaults_and_canonical_form() {
        assert_eq!(ok("http://Example.COM").to_string(), "http://example.com");
        assert_eq!(ok("http://example.com").port, 80);
        assert_eq!(ok("https://example.com").port, 443);
        assert_eq!(ok("tls://example.com").port, 443);
        assert_eq!(
            ok("http://example.com:8080").to_string(),
            "http://example.com:8080"
        );
        assert_eq!(ok("example.internal").scheme, Scheme::Https);
        assert_eq!(ok("tcp://example.com:5432").port, 5432);
    }

    #[test]
    fn refusals() {
        use UrlError::*;
        let err = |s: &str| EndpointUrl::parse(s).unwrap_err();
        assert_eq!(err(""), Empty);
        assert!(matches!(err("ftp://a.com"), UnsupportedScheme(_)));
        assert_eq!(err("http://a.com/x"), ExtraPart("path"));
        assert_eq!(err("http://a.com/"), ExtraPart("trailing slash"));
        assert_eq!(err("http://a.com?x"), ExtraPart("query"));
        assert_eq!(err("http://a.com#x"), ExtraPart("fragment"));
        assert_eq!(err("http://u@a.com"), ExtraPart("user info"));
        assert_eq!(err("tcp://a.com"), MissingPort);
        assert!(matches!(err("http://a.com:0"), InvalidPort(_)));
        assert!(matches!(err("http://a.com:65536"), InvalidPort(_)));
        assert!(matches!(err("http://a.com:+80"), InvalidPort(_)));
        assert_eq!(err("http://"), MissingHost);
        assert!(matches!(err("http://a_b.com"), InvalidHost(_)));
        assert!(matches!(err("http://-a.com"), InvalidHost(_)));
        assert!(matches!(err("http://a..com"), InvalidHost(_)));
        assert!(matches!(err("http://*"), InvalidHost(_)));
        assert!(matches!(err("http://a.*.com"), InvalidHost(_)));
        assert!(matches!(err("internal"), BareInternal(_)));
        assert!(matches!(err("*.internal"), BareInternal(_)));
    }

    #[test]
    fn internal_label_limit() {
        ok("a.b.c.d.e.internal");
        ok("*.b.c.d.e.internal");
        assert!(matches!(
            EndpointUrl::parse("a.b.c.d.e.f.internal"),
            Err(UrlError::TooManyInternalLabels(_))
        ));
        assert!(matches!(
            EndpointUrl::parse("*.b.c.d.e.f.internal"),
            Err(UrlError::TooManyInternalLabels(_))
        ));
    }

    #[test]
    fn wildcard_matching() {
        let w = HostPattern::Wildcard("example.com".into());
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(!w.matches(".example.com"));
    }
}
