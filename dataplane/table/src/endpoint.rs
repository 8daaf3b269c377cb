//! Endpoints and their parts (SPEC §1, §2): bindings, agent upstreams, and the checks
//! that concern one endpoint on its own.

use std::fmt;
use std::sync::Arc;

use crate::policy::{Carrier, Policy, PolicyError};
use crate::url::{EndpointUrl, Scheme, UrlError};

/// Who can reach an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Binding {
    /// The data plane listens for it.
    Public,
    /// Reached only by forward-internal from the same account.
    Internal,
}

impl Binding {
    /// The binding as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Public => "public",
            Binding::Internal => "internal",
        }
    }

    /// Parses `public` or `internal`.
    pub fn parse(s: &str) -> Result<Binding, EndpointError> {
        match s {
            "public" => Ok(Binding::Public),
            "internal" => Ok(Binding::Internal),
            other => Err(EndpointError::UnknownBinding(other.to_string())),
        }
    }

    /// The binding a URL implies, checked against the one asked for (SPEC §2).
    pub fn resolve(url: &EndpointUrl, asked: Option<Binding>) -> Result<Binding, EndpointError> {
        let implied = if url.is_internal() {
            Binding::Internal
        } else {
            Binding::Public
        };
        match asked {
            Some(b) if b != implied => Err(EndpointError::BindingMismatch {
                url: url.to_string(),
                binding: b,
            }),
            _ => Ok(implied),
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an agent endpoint's traffic finally goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// How to talk to it.
    pub scheme: Scheme,
    /// A host name or IP address.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Upstream {
    /// Parses `scheme://host:port`, `host:port` or a bare port. A bare port means
    /// `127.0.0.1:PORT` with `default_scheme` (the agent's protocol).
    pub fn parse(input: &str, default_scheme: Scheme) -> Result<Upstream, EndpointError> {
        let bad = |why: &str| EndpointError::InvalidUpstream(format!("`{input}`: {why}"));
        let input = input.trim();
        let (scheme, rest) = match input.split_once("://") {
            Some((s, rest)) => {
                let scheme = match s.to_ascii_lowercase().as_str() {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    "tcp" => Scheme::Tcp,
                    "tls" => Scheme::Tls,
                    _ => return Err(bad("use http, https, tcp or tls")),
                };
                (scheme, rest)
            }
            None => (default_scheme, input),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an upstream is scheme://host[:port] without path"));
        }
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            let port = parse_port(rest).ok_or_else(|| bad("invalid port"))?;
            return Ok(Upstream {
                scheme,
                host: "127.0.0.1".into(),
                port,
            });
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (h, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => parse_port(p).ok_or_else(|| bad("invalid port"))?,
            None => scheme
                .default_port()
                .ok_or_else(|| bad("a tcp upstream needs a port"))?,
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
        if !host_ok {
            return Err(bad("invalid host"));
        }
        Ok(Upstream {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn parse_port(p: &str) -> Option<u16> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.len() <= 5 => Some(n),
        _ => None,
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Agent or cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    /// Has an upstream; traffic the policy does not end goes there.
    Agent {
        /// The service behind the endpoint.
        upstream: Upstream,
    },
    /// Its upstream is behind an agent's tunnel sessions: traffic the policy does not
    /// end rides a stream of a session that bound it.
    Tunnel,
    /// No upstream; the policy ends every request.
    Cloud,
}

/// An endpoint, parsed and checked on its own.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `ep_…`.
    pub id: String,
    /// The owning account.
    pub account: String,
    /// The URL it answers at.
    pub url: EndpointUrl,
    /// Public or internal.
    pub binding: Binding,
    /// Agent or cloud.
    pub kind: EndpointKind,
    /// Whether it joins a pool with endpoints of the same URL.
    pub pooling_enabled: bool,
    /// The parsed policy, shared between endpoints with the same text.
    pub policy: Arc<Policy>,
    /// The largest request body it accepts (413 above); http and https only.
    pub max_request_body: Option<u64>,
}

/// An endpoint as it travels: the same fields in their written form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointRecord {
    /// `ep_…`.
    pub id: String,
    /// The owning account.
    pub account: String,
    /// The URL as written.
    pub url: String,
    /// `public` or `internal`.
    pub binding: String,
    /// The upstream for agent endpoints; empty for cloud endpoints.
    pub upstream: String,
    /// Whether it joins a pool.
    pub pooling_enabled: bool,
    /// The policy document text (YAML or JSON); may be empty.
    pub traffic_policy: String,
    /// The largest request body in bytes; 0 for no limit.
    pub max_request_body: u64,
    /// Whether its upstream is reached through tunnel sessions (then `upstream` is
    /// empty: the agent resolves it).
    pub tunnel: bool,
}

/// Why an endpoint was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The URL does not parse.
    #[error("invalid url: {0}")]
    Url(#[from] UrlError),
    /// A binding other than public or internal.
    #[error("unknown binding `{0}`: use public or internal")]
    UnknownBinding(String),
    /// The binding contradicts the URL.
    #[error(
        "binding `{binding}` does not fit `{url}`: .internal hosts are internal, all others public"
    )]
    BindingMismatch {
        /// The URL.
        url: String,
        /// The binding asked for.
        binding: Binding,
    },
    /// The upstream does not parse.
    #[error("invalid upstream {0}")]
    InvalidUpstream(String),
    /// The policy does not parse or does not fit the endpoint.
    #[error("invalid traffic policy: {0}")]
    Policy(#[from] PolicyError),
    /// The id is not of the form `ep_…`.
    #[error("invalid endpoint id `{0}`")]
    InvalidId(String),
    /// No account was named.
    #[error("endpoint {0} has no account")]
    MissingAccount(String),
    /// A request body limit on an endpoint that carries no requests.
    #[error("max_request_body applies to http and https endpoints, not {0}")]
    BodyLimitOnStream(Scheme),
}

impl Endpoint {
    /// Parses and checks a record, reusing `policy` when the caller already parsed the
    /// same text (large tables share a few policies among many endpoints).
    pub fn from_record(
        record: &EndpointRecord,
        policy: Option<Arc<Policy>>,
    ) -> Result<Endpoint, EndpointError> {
        let id_ok = record.id.len() > 3
            && record.id.starts_with("ep_")
            && record
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !id_ok {
            return Err(EndpointError::InvalidId(record.id.clone()));
        }
        if record.account.is_empty() {
            return Err(EndpointError::MissingAccount(record.id.clone()));
        }
        let url = EndpointUrl::parse(&record.url)?;
        let asked = match record.binding.as_str() {
            "" => None,
            b => Some(Binding::parse(b)?),
        };
        let binding = Binding::resolve(&url, asked)?;
        let kind = if record.tunnel {
            if !record.upstream.is_empty() {
                return Err(EndpointError::InvalidUpstream(format!(
                    "`{}`: a tunnelled endpoint's upstream is the agent's to resolve",
                    record.upstream
                )));
            }
            EndpointKind::Tunnel
        } else if record.upstream.is_empty() {
            EndpointKind::Cloud
        } else {
            let default = match url.scheme.family() {
                crate::url::Family::Http => Scheme::Http,
                crate::url::Family::Stream => Scheme::Tcp,
            };
            let upstream = Upstream::parse(&record.upstream, default)?;
            if upstream.scheme.family() != url.scheme.family() {
                return Err(EndpointError::InvalidUpstream(format!(
                    "`{}`: a {} endpoint needs an {} upstream",
                    record.upstream,
                    url.scheme,
                    match url.scheme.family() {
                        crate::url::Family::Http => "http:// or https://",
                        crate::url::Family::Stream => "tcp:// or tls://",
                    }
                )));
            }
            EndpointKind::Agent { upstream }
        };
        let policy = match policy {
            Some(p) => p,
            None => Arc::new(Policy::parse(&record.traffic_policy)?),
        };
        policy.validate_for(Carrier {
            url: &url,
            internal: binding == Binding::Internal,
            has_upstream: !matches!(kind, EndpointKind::Cloud),
        })?;
        let max_request_body = (record.max_request_body > 0).then_some(record.max_request_body);
        if max_request_body.is_some() && url.scheme.family() != crate::url::Family::Http {
            return Err(EndpointError::BodyLimitOnStream(url.scheme));
        }
        Ok(Endpoint {
            id: record.id.clone(),
            account: record.account.clone(),
            url,
            binding,
            kind,
            pooling_enabled: record.pooling_enabled,
            policy,
            max_request_body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_inference_and_mismatch() {
        let internal = EndpointUrl::parse("https://a.internal").unwrap();
        let public = EndpointUrl::parse("https://a.example.com").unwrap();
        assert_eq!(Binding::resolve(&internal, None), Ok(Binding::Internal));
        assert_eq!(Binding::resolve(&public, None), Ok(Binding::Public));
        assert!(Binding::resolve(&internal, Some(Binding::Public)).is_err());
        assert!(Binding::resolve(&public, Some(Binding::Internal)).is_err());
    }

    #[test]
    fn upstream_forms() {
        let up = |s| Upstream::parse(s, Scheme::Http).unwrap().to_string();
        assert_eq!(up("8080"), "http://127.0.0.1:8080");
        assert_eq!(up("http://localhost:3000"), "http://localhost:3000");
        assert_eq!(up("localhost:3000"), "http://localhost:3000");
        assert_eq!(up("https://svc.local"), "https://svc.local:443");
        assert_eq!(up("http://[::1]:81"), "http://[::1]:81");
        assert!(Upstream::parse("http://a/x", Scheme::Http).is_err());
        assert!(Upstream::parse("http://a:0", Scheme::Http).is_err());
        assert!(Upstream::parse("tcp://a", Scheme::Tcp).is_err());
    }

    #[test]
    fn record_checks() {
        let rec = EndpointRecord {
            id: "ep_1".into(),
            account: "acct".into(),
            url: "http://a.example.com".into(),
            binding: "internal".into(),
            upstream: "8080".into(),
            ..Default::default()
        };
        assert!(matches!(
            Endpoint::from_record(&rec, None),
            Err(EndpointError::BindingMismatch { .. })
        ));
        let cloud = EndpointRecord {
            binding: String::new(),
            upstream: String::new(),
            ..rec
        };
        let e = Endpoint::from_record(&cloud, None).unwrap_err();
        assert!(e.to_string().contains("must end every request"), "{e}");
        let mixed = EndpointRecord {
            upstream: "tcp://127.0.0.1:5432".into(),
            ..cloud
        };
        let e = Endpoint::from_record(&mixed, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("needs an http:// or https:// upstream"),
            "{e}"
        );
    }
}
