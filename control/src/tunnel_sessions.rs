//! `GET /tunnel_sessions` and the commands the hosted service's API sends agents
//! (`POST /tunnel_sessions/{id}/stop|restart|update`): the caller's account's live
//! sessions, asked of the data plane that holds them, and commands delivered to their
//! agents there. Nothing here is stored: a session is live state of the data plane.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use innergate_table::link::{ControlClient, LinkError};
use innergate_table::tunnel_sessions::{SessionCommand, SessionRecord, NO_SUCH_SESSION};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// How long a call to the data plane may take: an agent has the session's RPC
/// deadline to answer a command, and the data plane a margin on top.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A reference to another object of the API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    pub id: String,
    pub uri: String,
}

/// A tunnel session as the API shows it (the hosted service's fields, and what the
/// agent said of itself).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TunnelSessionView {
    pub id: String,
    pub uri: String,
    /// The agent's version, as it says.
    pub agent_version: String,
    /// What the agent is (`innergate`, `ngrok-python`, …), as it says.
    pub client_type: String,
    /// The authtoken (or API key) it authenticated with.
    pub credential: Ref,
    /// The agent's address as the gateway sees it.
    pub ip: String,
    pub metadata: String,
    pub os: String,
    pub hostname: String,
    /// RFC 3339.
    pub started_at: String,
    /// How the session reaches the gateway.
    pub transport: String,
    /// The endpoints it binds.
    pub endpoints: Vec<Ref>,
}

/// `GET /tunnel_sessions`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TunnelSessionList {
    pub tunnel_sessions: Vec<TunnelSessionView>,
    pub uri: String,
    pub next_page_uri: Option<String>,
}

/// The body of `POST /tunnel_sessions/{id}/update` (all optional, as in the hosted API).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub permit_major_version: bool,
}

impl TunnelSessionView {
    fn from_record(r: SessionRecord) -> TunnelSessionView {
        let credential_uri = if r.authtoken_id.starts_with("at_") {
            format!("/authtokens/{}", r.authtoken_id)
        } else {
            String::new()
        };
        let ip = r
            .remote_addr
            .parse::<std::net::SocketAddr>()
            .map_or(r.remote_addr.clone(), |a| a.ip().to_string());
        TunnelSessionView {
            uri: format!("/tunnel_sessions/{}", r.id),
            id: r.id,
            agent_version: r.client_version,
            client_type: r.client_type,
            credential: Ref {
                id: r.authtoken_id,
                uri: credential_uri,
            },
            ip,
            metadata: r.metadata,
            os: r.os,
            hostname: r.hostname,
            started_at: humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(r.started_at),
            )
            .to_string(),
            transport: "tls".into(),
            endpoints: r
                .endpoint_ids
                .into_iter()
                .map(|id| Ref {
                    uri: format!("/endpoints/{id}"),
                    id,
                })
                .collect(),
        }
    }
}

/// The data plane's socket, or why there is none.
fn socket(socket: Option<&Arc<Path>>) -> Result<Arc<Path>, ApiError> {
    socket
        .cloned()
        .ok_or_else(|| ApiError::data_plane_unavailable("control runs without a data plane"))
}

/// Runs a blocking call on the data plane's control socket off the async runtime.
async fn ask<T: Send + 'static>(
    socket: Arc<Path>,
    call: impl FnOnce(&mut ControlClient) -> Result<T, LinkError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut client = ControlClient::connect(&socket, CALL_TIMEOUT)
            .map_err(ApiError::data_plane_unavailable)?;
        call(&mut client).map_err(ApiError::data_plane_unavailable)
    })
    .await
    .map_err(ApiError::internal)?
}

/// The account's sessions.
pub async fn list(
    dataplane: Option<&Arc<Path>>,
    account: &str,
) -> Result<TunnelSessionList, ApiError> {
    let all = ask(socket(dataplane)?, |c| c.sessions()).await?;
    Ok(TunnelSessionList {
        tunnel_sessions: all
            .into_iter()
            .filter(|s| s.account == account)
            .map(TunnelSessionView::from_record)
            .collect(),
        uri: "/tunnel_sessions".into(),
        next_page_uri: None,
    })
}

/// One of the account's sessions.
pub async fn get(
    dataplane: Option<&Arc<Path>>,
    account: &str,
    id: &str,
) -> Result<TunnelSessionView, ApiError> {
    let all = ask(socket(dataplane)?, |c| c.sessions()).await?;
    all.into_iter()
        .find(|s| s.id == id && s.account == account)
        .map(TunnelSessionView::from_record)
        .ok_or_else(|| ApiError::session_not_found(id))
}

/// Delivers `command` to the agent of one of the account's sessions; `Ok` once the
/// agent said it will comply.
pub async fn command(
    dataplane: Option<&Arc<Path>>,
    account: &str,
    id: &str,
    command: SessionCommand,
) -> Result<(), ApiError> {
    // Another account's session is as absent as one that does not exist.
    get(dataplane, account, id).await?;
    let name = command.name();
    let session = id.to_string();
    let answer = ask(socket(dataplane)?, move |c| c.command(&session, command)).await?;
    answer.map_err(|why| {
        if why.starts_with(NO_SUCH_SESSION) {
            ApiError::session_not_found(id)
        } else {
            ApiError::command_failed(name, &why)
        }
    })
}
