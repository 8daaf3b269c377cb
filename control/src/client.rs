//! A blocking client of the Endpoints API (and authtokens), used by the CLI and agent
//! mode, and how the CLI shows their answers to people.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::authtoken::{AuthtokenList, CreateAuthtoken, CreatedAuthtoken};
use crate::core::LeaseView;
use crate::endpoint::{CreateEndpoint, EndpointPage, EndpointView, UpdateEndpoint};
use crate::error::ApiError;
use crate::tunnel_sessions::{TunnelSessionList, TunnelSessionView};

/// Where the API is and who calls it.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    key: String,
}

impl ApiClient {
    pub fn new(base: &str, key: &str) -> Self {
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Option<T>, ApiError> {
        let request = ureq::request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.key))
            .timeout(std::time::Duration::from_secs(60));
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match result {
            Ok(response) if response.status() == 204 => Ok(None),
            Ok(response) => response
                .into_json()
                .map(Some)
                .map_err(|e| ApiError::internal(format!("unreadable API answer: {e}"))),
            Err(ureq::Error::Status(status, response)) => Err(response
                .into_json::<ApiError>()
                .unwrap_or_else(|_| ApiError::internal(format!("the API answered HTTP {status}")))),
            Err(e) => Err(ApiError::internal(format!(
                "cannot reach the API at {}: {e}",
                self.base
            ))),
        }
    }

    fn expect<T>(value: Option<T>) -> Result<T, ApiError> {
        value.ok_or_else(|| ApiError::internal("the API answered without a body"))
    }

    pub fn create(&self, body: &CreateEndpoint) -> Result<EndpointView, ApiError> {
        Self::expect(self.call("POST", "/endpoints", Some(body))?)
    }

    pub fn list(
        &self,
        limit: Option<usize>,
        before_id: Option<&str>,
    ) -> Result<EndpointPage, ApiError> {
        let mut path = "/endpoints".to_string();
        let mut sep = '?';
        if let Some(limit) = limit {
            path.push_str(&format!("{sep}limit={limit}"));
            sep = '&';
        }
        if let Some(before) = before_id {
            path.push_str(&format!("{sep}before_id={before}"));
        }
        Self::expect(self.call("GET", &path, None::<&()>)?)
    }

    pub fn get(&self, id: &str) -> Result<EndpointView, ApiError> {
        Self::expect(self.call("GET", &format!("/endpoints/{id}"), None::<&()>)?)
    }

    pub fn update(&self, id: &str, body: &UpdateEndpoint) -> Result<EndpointView, ApiError> {
        Self::expect(self.call("PATCH", &format!("/endpoints/{id}"), Some(body))?)
    }

    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.call::<serde_json::Value>("DELETE", &format!("/endpoints/{id}"), None::<&()>)
            .map(|_| ())
    }

    pub fn renew_lease(&self, id: &str) -> Result<LeaseView, ApiError> {
        Self::expect(self.call("POST", &format!("/endpoints/{id}/lease"), None::<&()>)?)
    }

    pub fn create_authtoken(&self, body: &CreateAuthtoken) -> Result<CreatedAuthtoken, ApiError> {
        Self::expect(self.call("POST", "/authtokens", Some(body))?)
    }

    /// Where this gateway's agents open tunnel sessions.
    pub fn tunnel(&self) -> Result<crate::api::TunnelView, ApiError> {
        Self::expect(self.call("GET", "/tunnel", None::<&()>)?)
    }

    pub fn list_authtokens(&self) -> Result<AuthtokenList, ApiError> {
        Self::expect(self.call("GET", "/authtokens", None::<&()>)?)
    }

    pub fn list_tunnel_sessions(&self) -> Result<TunnelSessionList, ApiError> {
        Self::expect(self.call("GET", "/tunnel_sessions", None::<&()>)?)
    }

    pub fn get_tunnel_session(&self, id: &str) -> Result<TunnelSessionView, ApiError> {
        Self::expect(self.call("GET", &format!("/tunnel_sessions/{id}"), None::<&()>)?)
    }

    /// `stop`, `restart` or `update` (with its body) for a session's agent.
    pub fn tunnel_session_command(
        &self,
        id: &str,
        command: &str,
        body: &serde_json::Value,
    ) -> Result<(), ApiError> {
        let path = format!("/tunnel_sessions/{id}/{command}");
        self.call::<serde_json::Value>("POST", &path, Some(body))
            .map(|_| ())
    }

    pub fn revoke_authtoken(&self, id: &str) -> Result<(), ApiError> {
        self.call::<serde_json::Value>("DELETE", &format!("/authtokens/{id}"), None::<&()>)
            .map(|_| ())
    }
}

/// Reads `--traffic-policy`: the text itself, or `@FILE`.
pub fn policy_arg(value: &str) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}")),
        None => Ok(value.to_string()),
    }
}

/// One endpoint for people.
pub fn show_endpoint(e: &EndpointView) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        if !v.is_empty() {
            out.push_str(&format!("{k:<16}{v}\n"));
        }
    };
    line("id", &e.id);
    line("url", &e.url);
    line("type", &e.kind);
    line("binding", &e.bindings.join(","));
    line("upstream", e.upstream_url.as_deref().unwrap_or(""));
    line("held by", e.held_by.as_str());
    line("pooling", if e.pooling_enabled { "enabled" } else { "" });
    let body_limit = match e.max_request_body_bytes {
        0 => String::new(),
        n => format!("{n} bytes"),
    };
    line("max body", &body_limit);
    line("description", &e.description);
    line("metadata", &e.metadata);
    line("created", &e.created_at);
    line("updated", &e.updated_at);
    if !e.traffic_policy.is_empty() {
        out.push_str("traffic policy:\n");
        for l in e.traffic_policy.lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

/// A page of endpoints as a table for people.
pub fn show_page(page: &EndpointPage) -> String {
    let rows = page.endpoints.iter().map(|e| {
        [
            e.id.clone(),
            e.url.clone(),
            e.kind.clone(),
            e.bindings.join(","),
            e.upstream_url.clone().unwrap_or_else(|| "-".into()),
        ]
    });
    let mut out = table(["ID", "URL", "TYPE", "BINDING", "UPSTREAM"], rows);
    if let Some(next) = &page.next_page_uri {
        out.push_str(&format!("more: {next}\n"));
    }
    out
}

/// Authtokens as a table for people (never a secret: the API has none to give).
pub fn show_authtokens(list: &AuthtokenList) -> String {
    let rows = list
        .authtokens
        .iter()
        .map(|t| [t.id.clone(), t.created_at.clone(), t.description.clone()]);
    table(["ID", "CREATED", "DESCRIPTION"], rows)
}

/// Tunnel sessions as a table for people.
pub fn show_tunnel_sessions(list: &TunnelSessionList) -> String {
    let rows = list.tunnel_sessions.iter().map(|s| {
        let agent = format!("{} {}", s.client_type, s.agent_version);
        let endpoints: Vec<&str> = s.endpoints.iter().map(|e| e.id.as_str()).collect();
        [
            s.id.clone(),
            agent.trim().to_string(),
            s.ip.clone(),
            s.started_at.clone(),
            endpoints.join(","),
        ]
    });
    table(["ID", "AGENT", "IP", "STARTED", "ENDPOINTS"], rows)
}

/// Left-aligned columns under `header`, two spaces apart.
fn table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
    let header = header.map(String::from);
    let rows: Vec<[String; N]> = rows.collect();
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
