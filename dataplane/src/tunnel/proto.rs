//! The agent protocol's messages, as the hosted service's SDKs send and expect them:
//! typed streams (a big-endian `u32` type first), JSON requests and responses with
//! Go-style field names, and the proxy header that starts every stream the server
//! opens towards the agent.
//!
//! Requests are read as loose JSON (`serde_json::Value`): the SDKs send many legacy
//! options, and each one must be either understood or refused by name, never
//! silently dropped.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Stream types (the first four bytes of a stream).
pub(crate) const AUTH: u32 = 0;
pub(crate) const BIND: u32 = 1;
pub(crate) const UNBIND: u32 = 2;
pub(crate) const PROXY: u32 = 3;
pub(crate) const RESTART: u32 = 4;
pub(crate) const STOP: u32 = 5;
pub(crate) const UPDATE: u32 = 6;
pub(crate) const BIND_LABELED: u32 = 7;
pub(crate) const STOP_TUNNEL: u32 = 9;
pub(crate) const HEARTBEAT: u32 = 0xFFFF_FFFF;

/// The protocol versions this server speaks, preferred first.
const VERSIONS: &[&str] = &["3", "2"];

/// The largest request body accepted on an RPC stream (a Bind carries a policy).
pub(crate) const MAX_REQUEST: usize = 1 << 20;

/// An `Auth` request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Auth {
    #[serde(default)]
    pub(crate) version: Vec<String>,
    #[serde(default)]
    pub(crate) extra: AuthExtra,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct AuthExtra {
    pub(crate) auth_token: String,
    pub(crate) client_type: String,
    pub(crate) version: String,
    pub(crate) hostname: String,
    #[serde(rename = "OS")]
    pub(crate) os: String,
    pub(crate) metadata: String,
    pub(crate) heartbeat_interval: i64,
}

/// The version both sides speak, if any.
pub(crate) fn pick_version(offered: &[String]) -> Option<&'static str> {
    // An SDK that offers nothing is an old one: it speaks "2".
    if offered.is_empty() {
        return Some("2");
    }
    VERSIONS
        .iter()
        .copied()
        .find(|v| offered.iter().any(|o| o == v))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AuthResp {
    pub(crate) version: &'static str,
    pub(crate) client_id: String,
    pub(crate) extra: AuthRespExtra,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AuthRespExtra {
    pub(crate) version: String,
    pub(crate) region: String,
    pub(crate) account_name: String,
    /// innergate's own: how many workers the data plane runs, so that its agent can
    /// open one session per worker. Other SDKs ignore unknown fields.
    pub(crate) workers: usize,
    /// innergate's own: which worker this session landed on.
    pub(crate) worker: usize,
}

/// An error answer: what every RPC returns when it fails.
#[derive(Debug, Serialize)]
pub(crate) struct ErrResp<'a> {
    #[serde(rename = "Error")]
    pub(crate) error: &'a str,
}

/// What a `Bind` asks for, checked for options innergate does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindRequest {
    /// The tunnel id the agent asks to keep (a rebind after reconnecting), or empty.
    pub(crate) id: String,
    /// `http`, `https`, `tcp` or `tls`.
    pub(crate) proto: String,
    /// The endpoint URL, built from the options.
    pub(crate) url: String,
    pub(crate) bindings: Vec<String>,
    pub(crate) pooling_enabled: bool,
    pub(crate) traffic_policy: String,
    pub(crate) metadata: String,
    pub(crate) forwards_to: String,
    /// The options as sent: the answer echoes them.
    pub(crate) opts: Value,
}

/// Options the SDKs send that innergate understands (or that have no effect on a
/// server), per protocol. Any other option with a non-empty value is refused.
const HTTP_OPTS: &[&str] = &[
    "Domain",
    "Hostname",
    "Subdomain",
    "TrafficPolicy",
    "ProxyProto",
    "HostHeaderRewrite",
    "LocalUrlScheme",
];
const TCP_OPTS: &[&str] = &["Addr", "TrafficPolicy", "ProxyProto"];
const TLS_OPTS: &[&str] = &[
    "Domain",
    "Hostname",
    "Subdomain",
    "TrafficPolicy",
    "ProxyProto",
    "MutualTLSAtAgent",
];

/// Whether a JSON value is an option left unset.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Reads a `Bind` request; `Err` is the message the agent gets.
pub(crate) fn parse_bind(v: &Value) -> Result<BindRequest, String> {
    let m = v.as_object().ok_or("a Bind request is a JSON object")?;
    let proto = str_field(m, "Proto").to_ascii_lowercase();
    let empty = Map::new();
    let opts = m.get("Opts").and_then(Value::as_object).unwrap_or(&empty);
    let extra = m.get("Extra").and_then(Value::as_object).unwrap_or(&empty);
    let known = match proto.as_str() {
        "http" | "https" => HTTP_OPTS,
        "tcp" => TCP_OPTS,
        "tls" => TLS_OPTS,
        "" => return Err("a Bind needs a Proto (http, https, tcp or tls)".into()),
        other => {
            return Err(format!(
                "unsupported protocol `{other}`: use http, https, tcp or tls"
            ))
        }
    };
    for (key, value) in opts {
        if !known.contains(&key.as_str()) && !is_unset(value) {
            return Err(format!(
                "the `{key}` option is not supported by innergate; express it in the \
                 endpoint's traffic policy instead"
            ));
        }
    }
    if !is_unset(opts.get("ProxyProto").unwrap_or(&Value::Null)) {
        return Err("PROXY protocol towards the agent is not supported by innergate".into());
    }
    if opts.get("MutualTLSAtAgent").is_some_and(|v| !is_unset(v)) {
        return Err("mutual TLS at the agent is not supported by innergate".into());
    }
    let host = [
        str_field(opts, "Domain"),
        str_field(opts, "Hostname"),
        str_field(opts, "Subdomain"),
    ]
    .into_iter()
    .find(|h| !h.is_empty())
    .unwrap_or("");
    let url = match proto.as_str() {
        "tcp" => {
            let addr = str_field(opts, "Addr");
            if addr.is_empty() {
                return Err("a tcp endpoint needs an address (host:port)".into());
            }
            if addr.contains("://") {
                addr.to_string()
            } else {
                format!("tcp://{addr}")
            }
        }
        _ if host.is_empty() => {
            return Err(format!(
                "a {proto} endpoint needs a domain: innergate assigns no random ones"
            ))
        }
        // A domain given as a whole URL (the SDKs' `url` option) keeps its port.
        _ if host.contains("://") => host.to_string(),
        _ => format!("{proto}://{host}"),
    };
    let traffic_policy = match opts.get("TrafficPolicy") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        // An older SDK sends the policy as an object: it is JSON policy text.
        Some(other) => other.to_string(),
    };
    let bindings = match extra.get("Bindings") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|b| b.as_str().map(str::to_string).ok_or("bindings are strings"))
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    Ok(BindRequest {
        id: str_field(m, "Id").to_string(),
        proto,
        url,
        bindings,
        pooling_enabled: extra
            .get("PoolingEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        traffic_policy,
        metadata: str_field(extra, "Metadata").to_string(),
        forwards_to: str_field(m, "ForwardsTo").to_string(),
        opts: Value::Object(opts.clone()),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BindResp {
    #[serde(rename = "Id")]
    pub(crate) id: String,
    #[serde(rename = "URL")]
    pub(crate) url: String,
    pub(crate) proto: String,
    pub(crate) opts: Value,
    pub(crate) extra: BindRespExtra,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BindRespExtra {
    pub(crate) token: String,
}

/// The header in front of every proxied connection.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ProxyHeader<'a> {
    pub(crate) id: &'a str,
    pub(crate) client_addr: &'a str,
    pub(crate) proto: &'a str,
    /// Empty: an endpoint, not one of the hosted service's edges.
    pub(crate) edge_type: &'a str,
    #[serde(rename = "PassthroughTLS")]
    pub(crate) passthrough_tls: bool,
}

/// Encodes a proxy stream's preamble: the stream type, then the header's length
/// (little-endian `i64`, as the SDKs read it) and the header.
pub(crate) fn proxy_preamble(header: &ProxyHeader<'_>) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a proxy header serializes");
    let mut out = Vec::with_capacity(12 + json.len());
    out.extend_from_slice(&PROXY.to_be_bytes());
    out.extend_from_slice(&(json.len() as i64).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// A `StopTunnel` command: the server ends one of the agent's tunnels.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StopTunnel<'a> {
    #[serde(rename = "Id")]
    pub(crate) id: &'a str,
    pub(crate) message: &'a str,
    pub(crate) error_code: Option<&'a str>,
}

/// The JSON value at the start of `buf`: `Ok(None)` while it is incomplete.
pub(crate) fn complete_json(buf: &[u8]) -> Result<Option<Value>, String> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    match values.next() {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(format!("invalid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(json: &str) -> Result<BindRequest, String> {
        parse_bind(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn an_sdk_http_bind_names_its_url_bindings_and_policy() {
        // As ngrok-rust 0.19 sends it for
        // http_endpoint().domain("app.internal").binding("internal").pooling_enabled(true)
        let b = bind(
            r#"{"Id":"","Proto":"https","ForwardsTo":"http://localhost:9000","ForwardsProto":"",
               "Opts":{"Domain":"app.internal","Hostname":"","Auth":"","Subdomain":"",
                 "HostHeaderRewrite":false,"LocalUrlScheme":null,"ProxyProto":0,
                 "Compression":null,"CircuitBreaker":null,"IPRestriction":null,
                 "BasicAuth":null,"OAuth":null,"OIDC":null,"WebhookVerification":null,
                 "MutualTLSCA":null,"RequestHeaders":null,"ResponseHeaders":null,
                 "WebsocketTCPConverter":null,"UserAgentFilter":null,
                 "TrafficPolicy":"on_http_request: []"},
               "Extra":{"Token":"","IPPolicyRef":"","Metadata":"m","Bindings":["internal"],
                 "PoolingEnabled":true}}"#,
        )
        .unwrap();
        assert_eq!(b.url, "https://app.internal");
        assert_eq!(b.bindings, vec!["internal".to_string()]);
        assert!(b.pooling_enabled);
        assert_eq!(b.traffic_policy, "on_http_request: []");
        assert_eq!(b.metadata, "m");
    }

    #[test]
    fn tcp_binds_take_their_address() {
        let b = bind(r#"{"Proto":"tcp","Opts":{"Addr":"db.internal:5432"},"Extra":{}}"#).unwrap();
        assert_eq!(b.url, "tcp://db.internal:5432");
    }

    #[test]
    fn options_innergate_lacks_are_refused_by_name() {
        let e = bind(
            r#"{"Proto":"http","Opts":{"Domain":"a.example","BasicAuth":{"credentials":[]},
               "OAuth":{"provider":"google"}},"Extra":{}}"#,
        )
        .unwrap_err();
        assert!(e.contains("`BasicAuth`"), "{e}");
        let e = bind(r#"{"Proto":"http","Opts":{"Domain":"a.example","OAuth":{"provider":"google"}},"Extra":{}}"#)
            .unwrap_err();
        assert!(e.contains("`OAuth`"), "{e}");
        let e =
            bind(r#"{"Proto":"tcp","Opts":{"Addr":"x:1","ProxyProto":2},"Extra":{}}"#).unwrap_err();
        assert!(e.contains("PROXY"), "{e}");
    }

    #[test]
    fn an_endpoint_without_a_domain_is_refused() {
        assert!(bind(r#"{"Proto":"https","Opts":{},"Extra":{}}"#)
            .unwrap_err()
            .contains("domain"));
        assert!(bind(r#"{"Proto":"udp","Opts":{},"Extra":{}}"#).is_err());
    }

    #[test]
    fn json_arrives_in_pieces() {
        let whole = br#"{"Version":["3"],"Extra":{"AuthToken":"t"}}"#;
        for cut in 0..whole.len() {
            assert_eq!(complete_json(&whole[..cut]).unwrap(), None, "cut {cut}");
        }
        assert!(complete_json(whole).unwrap().is_some());
        assert!(complete_json(b"{]").is_err());
    }

    #[test]
    fn the_proxy_preamble_is_type_length_header() {
        let p = proxy_preamble(&ProxyHeader {
            id: "ep_1",
            client_addr: "1.2.3.4:5",
            proto: "https",
            edge_type: "",
            passthrough_tls: false,
        });
        assert_eq!(&p[..4], &[0, 0, 0, 3]);
        let len = i64::from_le_bytes(p[4..12].try_into().unwrap()) as usize;
        assert_eq!(len, p.len() - 12);
        let v: Value = serde_json::from_slice(&p[12..]).unwrap();
        assert_eq!(v["Id"], "ep_1");
        assert_eq!(v["PassthroughTLS"], false);
    }

    #[test]
    fn versions_are_negotiated() {
        assert_eq!(pick_version(&["3".into(), "2".into()]), Some("3"));
        assert_eq!(pick_version(&["2".into()]), Some("2"));
        assert_eq!(pick_version(&["9".into()]), None);
    }
}
