//! Commands from control for an agent — Stop, Restart, Update — delivered as the
//! hosted service delivers them: a typed stream the server opens on the session, the
//! command as JSON, and the agent's answer (`{"Error": …}` when it refused or
//! failed) read back.

use innergate_table::tunnel_sessions::SessionCommand;
use serde_json::{json, Value};

use super::mux::Mux;
use super::{proto, session};

/// Sends `command` on `mux` and waits for the agent's answer.
pub(crate) async fn send(mux: &Mux, command: &SessionCommand) -> Result<(), String> {
    let (typ, body) = match command {
        SessionCommand::Stop => (proto::STOP, json!({})),
        SessionCommand::Restart => (proto::RESTART, json!({})),
        SessionCommand::Update {
            version,
            permit_major_version,
        } => (
            proto::UPDATE,
            json!({"Version": version, "PermitMajorVersion": permit_major_version}),
        ),
    };
    let stream = mux
        .open()
        .map_err(|_| "the session ended before the command could be sent".to_string())?;
    let mut bytes = typ.to_be_bytes().to_vec();
    bytes.extend(serde_json::to_vec(&body).expect("JSON values serialize"));
    stream
        .send_all(&bytes)
        .await
        .map_err(|e| format!("the command could not be sent: {e}"))?;
    let answer = session::read_request(&stream)
        .await
        .ok_or("the agent did not answer the command")?;
    match answer.get("Error").and_then(Value::as_str) {
        Some(error) if !error.is_empty() => Err(format!("the agent refused: {error}")),
        _ => Ok(()),
    }
}
