//! A blocking client for the data plane's control socket, shared by control and tests.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::tunnel_calls::{TunnelAnswer, TunnelCall};
use crate::tunnel_sessions::{SessionCommand, SessionRecord};
use crate::wire::{read_frame, write_frame, Ack, Message, TableMessage};

/// The identity of the file at `path` (device, inode): tells a control socket from
/// the one a newer data plane put in its place (an upgrade).
pub fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Why talking to the data plane failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The socket failed or closed.
    #[error("control link: {0}")]
    Io(#[from] io::Error),
    /// The data plane refused the table and kept the previous one.
    #[error("data plane refused table version {version}: {reason}")]
    Refused {
        /// The version refused.
        version: u64,
        /// Why.
        reason: String,
    },
    /// The reply did not decode or was not the one expected.
    #[error("control link: unexpected reply: {0}")]
    Protocol(String),
}

/// A connection to a data plane's control socket.
#[derive(Debug)]
pub struct ControlClient {
    stream: UnixStream,
}

impl ControlClient {
    /// Connects, with `timeout` on every later read and write.
    pub fn connect(path: &Path, timeout: Duration) -> io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(ControlClient { stream })
    }

    /// Sends a table and waits for the data plane's answer.
    pub fn apply(&mut self, table: TableMessage) -> Result<Ack, LinkError> {
        match self.call(&Message::ApplyTable(table))? {
            Message::Applied(ack) => Ok(ack),
            Message::Refused { version, reason } => Err(LinkError::Refused { version, reason }),
            other => Err(LinkError::Protocol(format!("{other:?}"))),
        }
    }

    /// Asks which table the data plane serves.
    pub fn status(&mut self) -> Result<Ack, LinkError> {
        match self.call(&Message::StatusRequest)? {
            Message::Status(ack) => Ok(ack),
            other => Err(LinkError::Protocol(format!("{other:?}"))),
        }
    }

    /// Every authenticated tunnel session of the data plane.
    pub fn sessions(&mut self) -> Result<Vec<SessionRecord>, LinkError> {
        match self.call(&Message::SessionsRequest)? {
            Message::Sessions(list) => Ok(list),
            Message::Refused { version, reason } => Err(LinkError::Refused { version, reason }),
            other => Err(LinkError::Protocol(format!("{other:?}"))),
        }
    }

    /// Sends `command` to the agent of `session` and waits for its answer: `Ok(Err)`
    /// carries the agent's error, or why the command could not reach it.
    pub fn command(
        &mut self,
        session: &str,
        command: SessionCommand,
    ) -> Result<Result<(), String>, LinkError> {
        let msg = Message::SessionCommand {
            session: session.to_string(),
            command,
        };
        match self.call(&msg)? {
            Message::CommandResult { error } if error.is_empty() => Ok(Ok(())),
            Message::CommandResult { error } => Ok(Err(error)),
            Message::Refused { version, reason } => Err(LinkError::Refused { version, reason }),
            other => Err(LinkError::Protocol(format!("{other:?}"))),
        }
    }

    fn call(&mut self, msg: &Message) -> Result<Message, LinkError> {
        write_frame(&mut self.stream, msg)?;
        let payload = read_frame(&mut self.stream)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "data plane closed the link")
        })?;
        Message::read(&payload).map_err(|e| LinkError::Protocol(e.to_string()))
    }
}

/// A subscription to a data plane's tunnel calls: control reads calls from it and
/// answers each by id.
#[derive(Debug)]
pub struct CallsClient {
    stream: UnixStream,
}

impl CallsClient {
    /// Connects and subscribes. Reads block until a call arrives (no timeout); writes
    /// time out after `timeout`.
    pub fn subscribe(path: &Path, timeout: Duration) -> io::Result<Self> {
        let mut stream = UnixStream::connect(path)?;
        stream.set_write_timeout(Some(timeout))?;
        write_frame(&mut stream, &Message::Subscribe)?;
        Ok(CallsClient { stream })
    }

    /// A second handle on the same subscription, to answer from another thread.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(CallsClient {
            stream: self.stream.try_clone()?,
        })
    }

    /// The next call; `Ok(None)` when the data plane closed the link.
    pub fn next_call(&mut self) -> Result<Option<(u64, TunnelCall)>, LinkError> {
        let Some(payload) = read_frame(&mut self.stream)? else {
            return Ok(None);
        };
        match Message::read(&payload).map_err(|e| LinkError::Protocol(e.to_string()))? {
            Message::TunnelCall { id, call } => Ok(Some((id, call))),
            other => Err(LinkError::Protocol(format!("{other:?}"))),
        }
    }

    /// Answers call `id`.
    pub fn answer(&mut self, id: u64, answer: TunnelAnswer) -> Result<(), LinkError> {
        write_frame(&mut self.stream, &Message::TunnelAnswer { id, answer })?;
        Ok(())
    }
}
