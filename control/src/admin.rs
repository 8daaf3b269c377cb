//! The local admin channel: a unix socket in the data directory through which
//! `innergate accounts create` reaches a running control, which holds the store open.
//! One JSON line in, one JSON line out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::{Command, CoreHandle};
use crate::error::ApiError;
use crate::store::Account;

/// A request on the admin channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRequest {
    /// Create an account with this name.
    CreateAccount {
        /// The account's name.
        name: String,
    },
}

/// The answer to an [`AdminRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminReply {
    /// The account and its new key.
    AccountCreated {
        /// The account.
        account: Account,
        /// Its API key, shown once.
        api_key: String,
    },
    /// Why it failed.
    Error(ApiError),
}

/// The admin socket of a data directory.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("admin.sock")
}

/// Serves the admin socket until the process ends. Only the data directory's owner
/// may connect.
pub fn spawn(data: &Path, core: CoreHandle) -> std::io::Result<()> {
    let path = socket_path(data);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    thread::Builder::new()
        .name("ig-admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve(stream, &core) {
                    log::warn!("admin socket: {e}");
                }
            }
        })?;
    Ok(())
}

fn serve(stream: UnixStream, core: &CoreHandle) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(AdminRequest::CreateAccount { name }) => {
            match core
                .call_blocking(|reply| Command::CreateAccount(name, reply))
                .and_then(|r| r)
            {
                Ok((account, api_key)) => AdminReply::AccountCreated { account, api_key },
                Err(e) => AdminReply::Error(e),
            }
        }
        Err(e) => AdminReply::Error(ApiError::bad_body(e.to_string())),
    };
    let mut out = serde_json::to_vec(&reply)?;
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// Asks a running control to create an account; `None` when none is running.
pub fn create_account_remote(
    data: &Path,
    name: &str,
) -> Option<Result<(Account, String), ApiError>> {
    let stream = UnixStream::connect(socket_path(data)).ok()?;
    let result = (|| {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = serde_json::to_vec(&AdminRequest::CreateAccount { name: name.into() })?;
        request.push(b'\n');
        (&stream).write_all(&request)?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        Ok::<_, std::io::Error>(serde_json::from_str::<AdminReply>(&line)?)
    })();
    Some(match result {
        Ok(AdminReply::AccountCreated { account, api_key }) => Ok((account, api_key)),
        Ok(AdminReply::Error(e)) => Err(e),
        Err(e) => Err(ApiError::internal(format!("admin socket: {e}"))),
    })
}
