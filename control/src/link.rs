//! Control's side of the control link: pushes tables and checks what the data plane
//! serves, reconnecting whenever the data plane restarts.

use std::path::PathBuf;
use std::time::Duration;

use innergate_table::link::{ControlClient, LinkError};
use innergate_table::wire::TableMessage;

/// How long a push may take (a large table is checked on the data plane first).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The result of a push.
#[derive(Debug)]
pub enum Pushed {
    /// Applied at this version.
    Applied,
    /// Refused; the data plane keeps its previous table.
    Refused(String),
    /// No data plane to talk to; the table goes out when one connects.
    Unavailable(String),
}

/// The connection to one data plane, if configured.
#[derive(Debug)]
pub struct DataPlaneLink {
    socket: Option<PathBuf>,
    client: Option<ControlClient>,
}

impl DataPlaneLink {
    pub fn new(socket: Option<PathBuf>) -> Self {
        DataPlaneLink {
            socket,
            client: None,
        }
    }

    /// The data plane's control socket, if configured.
    pub fn socket(&self) -> Option<&std::path::Path> {
        self.socket.as_deref()
    }

    fn client(&mut self) -> Option<&mut ControlClient> {
        if self.client.is_none() {
            let socket = self.socket.as_ref()?;
            match ControlClient::connect(socket, CALL_TIMEOUT) {
                Ok(client) => {
                    log::info!("connected to the data plane at {}", socket.display());
                    self.client = Some(client);
                }
                Err(_) => return None,
            }
        }
        self.client.as_mut()
    }

    /// Sends a table and waits for the answer.
    pub fn push(&mut self, table: TableMessage) -> Pushed {
        let Some(client) = self.client() else {
            return Pushed::Unavailable("data plane not connected".into());
        };
        match client.apply(table) {
            Ok(_) => Pushed::Applied,
            Err(LinkError::Refused { reason, .. }) => Pushed::Refused(reason),
            Err(e) => {
                self.client = None;
                Pushed::Unavailable(e.to_string())
            }
        }
    }

    /// The version the data plane serves; `None` when it cannot be reached.
    pub fn remote_version(&mut self) -> Option<u64> {
        let client = self.client()?;
        match client.status() {
            Ok(ack) => Some(ack.version),
            Err(_) => {
                self.client = None;
                None
            }
        }
    }
}
