//! Endpoints as control stores them and as the API shows them (SPEC §1, §6).

use innergate_table::{Binding, EndpointRecord, EndpointUrl, HostPattern};
use serde::{Deserialize, Serialize};

/// An endpoint as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredEndpoint {
    /// `ep_…`, sortable by creation time.
    pub id: String,
    /// The owning account's id.
    pub account: String,
    /// The URL in canonical form.
    pub url: String,
    /// `public` or `internal`.
    pub binding: String,
    /// The upstream of an agent endpoint.
    pub upstream_url: Option<String>,
    /// What keeps it alive. Stores written before this field existed lack it;
    /// [`crate::store`] fills it in when it reads them.
    pub held_by: HeldBy,
    /// The policy document as the user wrote it.
    pub traffic_policy: String,
    /// Whether it pools with endpoints of the same URL.
    pub pooling_enabled: bool,
    /// The largest request body in bytes (0: no limit). Absent in stores written
    /// before it existed.
    #[serde(default)]
    pub max_request_body_bytes: u64,
    /// Free text.
    pub description: String,
    /// Free text for machines.
    pub metadata: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl StoredEndpoint {
    /// The endpoint as the data plane receives it.
    pub fn record(&self) -> EndpointRecord {
        EndpointRecord {
            id: self.id.clone(),
            account: self.account.clone(),
            url: self.url.clone(),
            binding: self.binding.clone(),
            upstream: self.upstream_url.clone().unwrap_or_default(),
            pooling_enabled: self.pooling_enabled,
            traffic_policy: self.traffic_policy.clone(),
            max_request_body: self.max_request_body_bytes,
            tunnel: self.held_by == HeldBy::Tunnel,
        }
    }

    /// Whether it is an agent endpoint (it has an upstream). Whether it also has a
    /// lease is [`StoredEndpoint::held_by`]'s business.
    pub fn is_agent(&self) -> bool {
        self.upstream_url.is_some() || self.held_by == HeldBy::Tunnel
    }

    /// Whether it lives on a lease: renewed by an agent (`agent`), or by the data
    /// plane while its tunnel sessions hold it (`tunnel`), so that the endpoints of a
    /// gateway that died without a word do not stay.
    pub fn has_lease(&self) -> bool {
        matches!(self.held_by, HeldBy::Agent | HeldBy::Tunnel)
    }

    /// The API's view, with derived fields.
    pub fn view(&self) -> EndpointView {
        let url = EndpointUrl::parse(&self.url).ok();
        EndpointView {
            id: self.id.clone(),
            uri: format!("/endpoints/{}", self.id),
            url: self.url.clone(),
            kind: if self.is_agent() { "agent" } else { "cloud" }.into(),
            bindings: vec![self.binding.clone()],
            proto: url
                .as_ref()
                .map(|u| u.scheme.to_string())
                .unwrap_or_default(),
            host: url
                .as_ref()
                .map(|u| match &u.host {
                    HostPattern::Exact(h) => h.clone(),
                    w => w.to_string(),
                })
                .unwrap_or_default(),
            port: url.as_ref().map_or(0, |u| u.port),
            traffic_policy: self.traffic_policy.clone(),
            upstream_url: self.upstream_url.clone(),
            held_by: self.held_by,
            pooling_enabled: self.pooling_enabled,
            max_request_body_bytes: self.max_request_body_bytes,
            description: self.description.clone(),
            metadata: self.metadata.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// An endpoint as the API returns it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointView {
    /// `ep_…`.
    pub id: String,
    /// `/endpoints/{id}`.
    pub uri: String,
    /// The URL in canonical form.
    pub url: String,
    /// `agent` or `cloud`.
    #[serde(rename = "type")]
    pub kind: String,
    /// One of `public`, `internal`.
    pub bindings: Vec<String>,
    /// The URL's scheme.
    pub proto: String,
    /// The URL's host.
    pub host: String,
    /// The URL's port.
    pub port: u16,
    /// The policy document.
    pub traffic_policy: String,
    /// The upstream (agent endpoints only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upstream_url: Option<String>,
    /// What keeps it alive: `api` (until deleted), `agent` (a lease), `tunnel`.
    #[serde(default)]
    pub held_by: HeldBy,
    /// Whether it pools.
    pub pooling_enabled: bool,
    /// The largest request body in bytes (0: no limit); larger requests get 413.
    #[serde(default)]
    pub max_request_body_bytes: u64,
    /// Free text.
    pub description: String,
    /// Free text for machines.
    pub metadata: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// What keeps an endpoint alive (SPEC §1): configuration lives until deleted, an
/// agent's endpoint as long as the agent.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeldBy {
    /// Static configuration made through the API: lives until deleted.
    #[default]
    Api,
    /// Held by an agent process through a lease it renews
    /// (`POST /endpoints/{id}/lease`); removed when the lease runs out.
    Agent,
    /// Held by an agent's tunnel sessions. Only the tunnel path makes these.
    Tunnel,
}

impl HeldBy {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldBy::Api => "api",
            HeldBy::Agent => "agent",
            HeldBy::Tunnel => "tunnel",
        }
    }
}

impl std::fmt::Display for HeldBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `POST /endpoints`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// The URL (required).
    pub url: String,
    /// `agent` or `cloud`; inferred from `upstream_url` when absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// One binding; inferred from the URL when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings: Option<Vec<String>>,
    /// The policy (YAML or JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<String>,
    /// The upstream: makes it an agent endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<String>,
    /// `api` (default: static, lives until deleted) or `agent` (lives on a lease the
    /// agent renews; needs an upstream). `tunnel` is refused: tunnel sessions make
    /// those themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<HeldBy>,
    /// Pool with endpoints of the same URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling_enabled: Option<bool>,
    /// The largest request body in bytes (http/https; 0 or absent: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free text for machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// The body of `PATCH /endpoints/{id}`: only the fields present change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// A new URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A new binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings: Option<Vec<String>>,
    /// A new policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<String>,
    /// A new upstream (agent endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<String>,
    /// Pooling on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling_enabled: Option<bool>,
    /// A new request body limit in bytes (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// New free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A page of `GET /endpoints`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndpointPage {
    /// Newest first.
    pub endpoints: Vec<EndpointView>,
    /// This page's URI.
    pub uri: String,
    /// The next page, when there is one.
    pub next_page_uri: Option<String>,
}

/// Reads the one binding of a `bindings` list.
pub fn single_binding(bindings: &[String]) -> Result<Binding, String> {
    match bindings {
        [one] => Binding::parse(one).map_err(|e| e.to_string()),
        _ => Err("bindings must hold exactly one of public, internal".into()),
    }
}

/// The canonical form of a URL, or why it is invalid.
pub fn canonical_url(url: &str) -> Result<(EndpointUrl, String), innergate_table::url::UrlError> {
    let parsed = EndpointUrl::parse(url)?;
    let text = parsed.to_string();
    Ok((parsed, text))
}

/// Generates ids and keys.
#[derive(Debug, Default)]
pub struct IdGen {
    last_ms: u64,
}

impl IdGen {
    /// A new `prefix_…` id, strictly greater than every earlier one from this
    /// generator, so ids sort by creation.
    pub fn next(&mut self, prefix: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_ms = now.max(self.last_ms + 1);
        let mut random = [0u8; 4];
        getrandom::fill(&mut random).expect("the OS random source");
        format!(
            "{prefix}_{:012x}{:08x}",
            self.last_ms,
            u32::from_be_bytes(random)
        )
    }
}

/// A new API key: 32 random bytes, hex.
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("ig_{hex}")
}

/// How a key is stored: its SHA-256, hex. Keys are random and long, so a fast hash
/// is enough.
pub fn hash_key(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Now, RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let mut ids = IdGen::default();
        let a: Vec<String> = (0..100).map(|_| ids.next("ep")).collect();
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(a, sorted);
        assert!(a[0].starts_with("ep_") && a[0].len() == 23);
    }

    #[test]
    fn keys_hash_stably() {
        let key = new_api_key();
        assert_eq!(hash_key(&key), hash_key(&key));
        assert_ne!(hash_key(&key), hash_key(&new_api_key()));
        assert_eq!(hash_key("x").len(), 64);
    }
}
