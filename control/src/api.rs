//! The Endpoints API over HTTP/1.1 JSON (SPEC §6), on axum, with the authtokens of
//! the caller's account beside it.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::authtoken::CreateAuthtoken;
use crate::core::{Command, CoreHandle, ListQuery};
use crate::endpoint::{CreateEndpoint, UpdateEndpoint};
use crate::error::ApiError;
use crate::tunnel_sessions;
use innergate_table::tunnel_sessions::SessionCommand;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// The API's routes over a control core.
pub fn router(core: CoreHandle) -> Router {
    Router::new()
        .route("/endpoints", post(create).get(list))
        .route("/endpoints/{id}", get(get_one).patch(update).delete(delete))
        .route("/endpoints/{id}/lease", post(renew_lease))
        .route("/authtokens", post(create_authtoken).get(list_authtokens))
        .route("/authtokens/{id}", axum::routing::delete(revoke_authtoken))
        .route("/tunnel", get(tunnel))
        .route("/tunnel_sessions", get(list_sessions))
        .route("/tunnel_sessions/{id}", get(get_session))
        .route("/tunnel_sessions/{id}/{command}", post(command_session))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(core.clone(), count_call))
        .fallback(|| async { ApiError::bad_query("no such route; see /endpoints") })
        .with_state(core)
}

/// Counts every call of a known route by its pattern, method and status.
async fn count_call(
    State(core): State<CoreHandle>,
    route: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let route = route.as_str().to_string();
    let method = request.method().to_string();
    let response = next.run(request).await;
    core.metrics
        .record_call(&route, &method, response.status().as_u16());
    response
}

/// `GET /metrics`: control's Prometheus text (aggregates only; no key needed).
async fn metrics(State(core): State<CoreHandle>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        core.metrics.render(),
    )
        .into_response()
}

/// The account the request's bearer key belongs to.
async fn account(core: &CoreHandle, headers: &HeaderMap) -> Result<String, ApiError> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let found = core
        .call(|reply| Command::Authenticate(key.to_string(), reply))
        .await??;
    found.map(|a| a.id).ok_or_else(ApiError::unauthorized)
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_body(e.body_text()))
}

async fn create(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    json: Result<Json<CreateEndpoint>, JsonRejection>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let request = body(json)?;
    let view = core
        .call(|reply| Command::Create(account, request, reply))
        .await??;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let Query(query) = query.map_err(|e| ApiError::bad_query(e.body_text()))?;
    let page = core
        .call(|reply| Command::List(account, query, reply))
        .await??;
    Ok(Json(page).into_response())
}

async fn get_one(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let view = core
        .call(|reply| Command::Get(account, id, reply))
        .await??;
    Ok(Json(view).into_response())
}

async fn update(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    json: Result<Json<UpdateEndpoint>, JsonRejection>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let request = body(json)?;
    let view = core
        .call(|reply| Command::Update(account, id, request, reply))
        .await??;
    Ok(Json(view).into_response())
}

async fn delete(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    core.call(|reply| Command::Delete(account, id, reply))
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn renew_lease(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let lease = core
        .call(|reply| Command::RenewLease(account, id, reply))
        .await??;
    Ok(Json(lease).into_response())
}

/// Where agents open tunnel sessions, for agents that know only the API.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TunnelView {
    /// The tunnel listener, `host:port`.
    pub server_addr: String,
    /// `/tunnel`.
    pub uri: String,
}

/// `GET /tunnel`.
async fn tunnel(State(core): State<CoreHandle>, headers: HeaderMap) -> Result<Response, ApiError> {
    account(&core, &headers).await?;
    let Some(addr) = core.tunnel_url.as_deref() else {
        return Err(ApiError::no_tunnel());
    };
    Ok(Json(TunnelView {
        server_addr: addr.to_string(),
        uri: "/tunnel".into(),
    })
    .into_response())
}

/// `GET /tunnel_sessions`: the account's live sessions.
async fn list_sessions(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let list = tunnel_sessions::list(core.dataplane_socket.as_ref(), &account).await?;
    Ok(Json(list).into_response())
}

async fn get_session(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let view = tunnel_sessions::get(core.dataplane_socket.as_ref(), &account, &id).await?;
    Ok(Json(view).into_response())
}

/// `POST /tunnel_sessions/{id}/stop|restart|update`: 204 once the agent accepted.
/// The body is optional (`update` takes `version` and `permit_major_version`).
async fn command_session(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path((id, command)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    // No body, `null` and `{}` are alike: every field is optional.
    let update: Option<tunnel_sessions::UpdateRequest> = if raw.iter().all(u8::is_ascii_whitespace)
    {
        None
    } else {
        body(Json::from_bytes(&raw))?
    };
    let update = update.unwrap_or_default();
    let command = match command.as_str() {
        "stop" => SessionCommand::Stop,
        "restart" => SessionCommand::Restart,
        "update" => SessionCommand::Update {
            version: update.version,
            permit_major_version: update.permit_major_version,
        },
        other => {
            return Err(ApiError::bad_query(format!(
                "no command {other}: stop, restart or update"
            )))
        }
    };
    tunnel_sessions::command(core.dataplane_socket.as_ref(), &account, &id, command).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /authtokens`: the body is optional (`{"description": ...}`).
async fn create_authtoken(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    // No body at all is a request with every field absent, whatever its Content-Type.
    let request = if raw.iter().all(u8::is_ascii_whitespace) {
        CreateAuthtoken::default()
    } else {
        body(Json::from_bytes(&raw))?
    };
    let created = core
        .call(|reply| Command::CreateAuthtoken(account, request, reply))
        .await??;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_authtokens(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    let list = core
        .call(|reply| Command::ListAuthtokens(account, reply))
        .await?;
    Ok(Json(list).into_response())
}

async fn revoke_authtoken(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let account = account(&core, &headers).await?;
    core.call(|reply| Command::RevokeAuthtoken(account, id, reply))
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}
