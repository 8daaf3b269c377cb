//! The data plane's tunnel sessions as control sees them, and the commands control
//! sends one (the hosted service's `tunnel_sessions` API: stop, restart, update).
//! Both travel on a request connection of the control link (see [`crate::wire`]).

use crate::codec::{put_str, put_u32, InvalidMessage, Reader};

/// One live, authenticated session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRecord {
    /// The id the agent was given (`ses_…`).
    pub id: String,
    /// The account of its authtoken.
    pub account: String,
    /// The authtoken (or API key) it authenticated with: its id, never the secret.
    pub authtoken_id: String,
    /// The agent's address as the data plane sees it.
    pub remote_addr: String,
    /// What the agent says it is (`innergate`, `ngrok-python`, …).
    pub client_type: String,
    /// The agent's version, as it says.
    pub client_version: String,
    /// The agent's operating system, as it says.
    pub os: String,
    /// The agent's host name, as it says.
    pub hostname: String,
    /// Free text the agent attached to its session.
    pub metadata: String,
    /// When it authenticated, in seconds since the Unix epoch.
    pub started_at: u64,
    /// The endpoints it binds.
    pub endpoint_ids: Vec<String>,
}

/// A command for an agent, as the hosted service's agents understand them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionCommand {
    /// Stop: the agent exits.
    Stop,
    /// Restart: the agent starts over (new sessions, the same endpoints).
    Restart,
    /// Update the agent to `version` (agents that cannot answer with an error).
    Update {
        /// The version asked for; empty for the newest.
        version: String,
        /// Whether a new major version is acceptable.
        permit_major_version: bool,
    },
}

/// How a [`crate::wire::Message::CommandResult`] error starts when the data plane has
/// no session by that id (control answers 404 for it, not a failed command).
pub const NO_SUCH_SESSION: &str = "no tunnel session";

const COMMAND_STOP: u8 = 1;
const COMMAND_RESTART: u8 = 2;
const COMMAND_UPDATE: u8 = 3;

impl SessionRecord {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for s in [
            &self.id,
            &self.account,
            &self.authtoken_id,
            &self.remote_addr,
            &self.client_type,
            &self.client_version,
            &self.os,
            &self.hostname,
            &self.metadata,
        ] {
            put_str(out, s);
        }
        out.extend_from_slice(&self.started_at.to_be_bytes());
        put_u32(out, self.endpoint_ids.len() as u32);
        for e in &self.endpoint_ids {
            put_str(out, e);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<SessionRecord, InvalidMessage> {
        Ok(SessionRecord {
            id: r.string()?,
            account: r.string()?,
            authtoken_id: r.string()?,
            remote_addr: r.string()?,
            client_type: r.string()?,
            client_version: r.string()?,
            os: r.string()?,
            hostname: r.string()?,
            metadata: r.string()?,
            started_at: r.u64()?,
            endpoint_ids: {
                let n = r.count(4)?;
                (0..n).map(|_| r.string()).collect::<Result<_, _>>()?
            },
        })
    }

    /// The least a record takes on the wire: nine empty strings, a u64, a count.
    pub(crate) const MIN_LEN: usize = 9 * 4 + 8 + 4;
}

impl SessionCommand {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SessionCommand::Stop => out.push(COMMAND_STOP),
            SessionCommand::Restart => out.push(COMMAND_RESTART),
            SessionCommand::Update {
                version,
                permit_major_version,
            } => {
                out.push(COMMAND_UPDATE);
                put_str(out, version);
                out.push(*permit_major_version as u8);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<SessionCommand, InvalidMessage> {
        Ok(match r.u8()? {
            COMMAND_STOP => SessionCommand::Stop,
            COMMAND_RESTART => SessionCommand::Restart,
            COMMAND_UPDATE => SessionCommand::Update {
                version: r.string()?,
                permit_major_version: r.bool()?,
            },
            kind => return Err(InvalidMessage::UnknownKind(kind)),
        })
    }

    /// The command's name in the API and in logs.
    pub fn name(&self) -> &'static str {
        match self {
            SessionCommand::Stop => "stop",
            SessionCommand::Restart => "restart",
            SessionCommand::Update { .. } => "update",
        }
    }
}

/// One of each command, for round-trip tests.
#[cfg(test)]
pub(crate) fn command_examples() -> Vec<SessionCommand> {
    vec![
        SessionCommand::Stop,
        SessionCommand::Restart,
        SessionCommand::Update {
            version: "3.1.0".into(),
            permit_major_version: true,
        },
    ]
}
