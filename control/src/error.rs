//! API errors: `{"error_code","status_code","msg"}` with a stable code per cause.

use innergate_table::TableError;
use serde::Serialize;

use crate::endpoint::HeldBy;

/// An error as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
#[error("{msg} ({error_code})")]
pub struct ApiError {
    /// `ERR_IG_NNNN`.
    pub error_code: String,
    /// The HTTP status.
    pub status_code: u16,
    /// What went wrong, for a person.
    pub msg: String,
}

impl ApiError {
    fn new(status_code: u16, error_code: &str, msg: impl Into<String>) -> Self {
        ApiError {
            error_code: error_code.into(),
            status_code,
            msg: msg.into(),
        }
    }

    /// No key, or a key no account has.
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "ERR_IG_7000",
            "missing or invalid API key: send Authorization: Bearer KEY",
        )
    }

    /// No such endpoint in the caller's account.
    pub fn not_found(id: &str) -> Self {
        Self::new(404, "ERR_IG_7001", format!("endpoint {id} not found"))
    }

    /// This gateway has no tunnel listener.
    pub fn no_tunnel() -> Self {
        Self::new(
            404,
            "ERR_IG_7007",
            "this gateway has no tunnel listener: start `innergate serve` with --tunnel-url \
             (and the data plane with --tunnel), or use --direct",
        )
    }

    /// No such tunnel session in the caller's account.
    pub fn session_not_found(id: &str) -> Self {
        Self::new(404, "ERR_IG_7008", format!("tunnel session {id} not found"))
    }

    /// The agent refused or failed a command, or could not be reached.
    pub fn command_failed(command: &str, why: &str) -> Self {
        Self::new(
            409,
            "ERR_IG_7009",
            format!("the {command} command did not succeed: {why}"),
        )
    }

    /// The data plane could not be asked.
    pub fn data_plane_unavailable(why: impl std::fmt::Display) -> Self {
        Self::new(
            503,
            "ERR_IG_7201",
            format!("the data plane cannot be reached: {why}"),
        )
    }

    /// No such authtoken in the caller's account.
    pub fn authtoken_not_found(id: &str) -> Self {
        Self::new(404, "ERR_IG_7006", format!("authtoken {id} not found"))
    }

    /// The body does not parse or has unknown fields.
    pub fn bad_body(msg: impl Into<String>) -> Self {
        Self::new(400, "ERR_IG_7002", msg)
    }

    /// A query parameter is out of range.
    pub fn bad_query(msg: impl Into<String>) -> Self {
        Self::new(400, "ERR_IG_7003", msg)
    }

    /// `type` and `upstream_url` disagree.
    pub fn type_mismatch(msg: impl Into<String>) -> Self {
        Self::new(400, "ERR_IG_7004", msg)
    }

    /// A lease renewal for an endpoint that no agent holds.
    pub fn no_lease(id: &str, held_by: HeldBy) -> Self {
        Self::new(
            400,
            "ERR_IG_7005",
            format!(
                "endpoint {id} is held by {held_by}, not by an agent, so it has no lease to renew{}",
                match held_by {
                    HeldBy::Api => ": it lives until deleted",
                    _ => "",
                }
            ),
        )
    }

    /// The data plane refused the new table; nothing changed.
    pub fn refused_by_data_plane(reason: &str) -> Self {
        Self::new(
            422,
            "ERR_IG_7200",
            format!("the data plane refused the change, which was rolled back: {reason}"),
        )
    }

    /// The store failed.
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self::new(500, "ERR_IG_7300", format!("internal error: {msg}"))
    }
}

impl From<TableError> for ApiError {
    fn from(e: TableError) -> Self {
        let status = if e.is_conflict() { 409 } else { 400 };
        Self::new(status, e.code(), e.to_string())
    }
}
