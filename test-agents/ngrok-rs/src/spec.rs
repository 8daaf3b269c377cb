//! `--endpoint PROTO,URL,FORWARD[,internal][,pool]`, parsed once into an
//! [`EndpointSpec`] so that `main` only maps typed values onto SDK builders.

use std::{fmt, str::FromStr};

use url::Url;

/// The kind of endpoint to bind, as the first field of `--endpoint` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// An http endpoint with the `http` scheme.
    Http,
    /// An http endpoint with the `https` scheme (TLS terminated by the server).
    Https,
    /// A tcp endpoint.
    Tcp,
    /// A tls endpoint whose bytes pass through to the agent.
    Tls,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Https => "https",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endpoint to bind and the local upstream its connections go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// What kind of endpoint.
    pub proto: Proto,
    /// The host the endpoint is reached at (`app.internal`).
    pub host: String,
    /// Only for tcp: the port of the endpoint's address.
    pub port: Option<u16>,
    /// `binding("internal")`: given as a flag, or implied by a `.internal` host.
    pub internal: bool,
    /// `pooling_enabled(true)`: several agents may bind the same URL.
    pub pool: bool,
    /// The local upstream the SDK's forwarder dials for each connection.
    pub forward: Url,
}

impl EndpointSpec {
    /// `host:port` for the tcp builder's `remote_addr`.
    pub fn remote_addr(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

impl FromStr for EndpointSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut fields = s.split(',');
        let (Some(proto), Some(url), Some(forward)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "{s:?}: expected PROTO,URL,FORWARD[,internal][,pool]"
            ));
        };
        let proto = match proto {
            "http" => Proto::Http,
            "https" => Proto::Https,
            "tcp" => Proto::Tcp,
            "tls" => Proto::Tls,
            other => return Err(format!("unknown PROTO {other:?} (http, https, tcp, tls)")),
        };
        let url = Url::parse(url).map_err(|e| format!("URL {url:?}: {e}"))?;
        // PROTO says the same thing as the URL's scheme; a mismatch is a typo in a
        // test, better caught here than as a puzzling bind on the server.
        if url.scheme() != proto.as_str() {
            return Err(format!("URL {url} does not have the {proto} scheme"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("URL {url} has no host"))?
            .to_owned();
        // The 0.19 builders take a bare domain for http and tls endpoints (no
        // port field in the bind), so only the scheme's default port can be asked for.
        let port = match (proto, url.port()) {
            (Proto::Tcp, None) => return Err(format!("URL {url} needs a port")),
            (Proto::Tcp, port) => port,
            // `url` knows the defaults of http and https (port() is None then),
            // not of tls.
            (Proto::Tls, Some(443)) | (_, None) => None,
            (_, Some(port)) => {
                return Err(format!(
                    "URL {url}: the SDK cannot bind a {proto} endpoint on port {port}, only on the default one"
                ))
            }
        };
        let forward = Url::parse(forward).map_err(|e| format!("FORWARD {forward:?}: {e}"))?;
        if !matches!(forward.scheme(), "http" | "https" | "tcp" | "tls") {
            return Err(format!(
                "FORWARD {forward}: scheme must be http, https, tcp or tls"
            ));
        }
        let mut internal = host.ends_with(".internal");
        let mut pool = false;
        for flag in fields {
            match flag {
                "internal" => internal = true,
                "pool" => pool = true,
                other => return Err(format!("unknown flag {other:?} (internal, pool)")),
            }
        }
        Ok(EndpointSpec {
            proto,
            host,
            port,
            internal,
            pool,
            forward,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_https_from_host() {
        let spec: EndpointSpec = "https,https://app.internal,http://127.0.0.1:9000"
            .parse()
            .unwrap();
        assert_eq!(spec.proto, Proto::Https);
        assert_eq!(spec.host, "app.internal");
        assert!(spec.internal);
        assert!(!spec.pool);
        assert_eq!(spec.forward.as_str(), "http://127.0.0.1:9000/");
    }

    #[test]
    fn flags() {
        let spec: EndpointSpec = "http,http://app.example.com,http://127.0.0.1:1,internal,pool"
            .parse()
            .unwrap();
        assert!(spec.internal && spec.pool);
        let spec: EndpointSpec = "http,http://app.example.com,http://127.0.0.1:1"
            .parse()
            .unwrap();
        assert!(!spec.internal);
    }

    #[test]
    fn tcp_needs_port_and_keeps_it() {
        let spec: EndpointSpec = "tcp,tcp://db.internal:5432,tcp://127.0.0.1:9001"
            .parse()
            .unwrap();
        assert_eq!(spec.remote_addr(), "db.internal:5432");
        assert!("tcp,tcp://db.internal,tcp://127.0.0.1:9001"
            .parse::<EndpointSpec>()
            .is_err());
    }

    #[test]
    fn tls_default_port_only() {
        let spec: EndpointSpec = "tls,tls://secure.internal:443,tls://127.0.0.1:9002"
            .parse()
            .unwrap();
        assert_eq!(spec.port, None);
        assert!("tls,tls://secure.internal:8443,tls://127.0.0.1:9002"
            .parse::<EndpointSpec>()
            .is_err());
    }

    #[test]
    fn rejects() {
        for bad in [
            "http,http://a.internal",
            "udp,udp://a.internal:1,tcp://127.0.0.1:1",
            "http,https://a.internal,http://127.0.0.1:1",
            "http,http://a.internal:8080,http://127.0.0.1:1",
            "http,http://a.internal,ftp://127.0.0.1:1",
            "http,http://a.internal,http://127.0.0.1:1,bogus",
        ] {
            assert!(bad.parse::<EndpointSpec>().is_err(), "{bad}");
        }
    }
}
