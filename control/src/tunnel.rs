//! Control's side of the tunnel calls: it subscribes to the data plane's calls (Binds
//! from agent sessions, endpoints released or still held) and turns each into a core
//! command, so that a Bind is validated exactly like an API create.
//!
//! A data plane that is replaced (`--takeover`) keeps its subscription until it
//! exits; the new one gets its own as soon as its socket appears, so that agents
//! reconnecting to it can bind at once.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use innergate_table::link::{socket_identity as file_id, CallsClient};
use innergate_table::tunnel_calls::TunnelAnswer;

use crate::core::{Command, CoreHandle};

/// How often the socket is checked for a new data plane.
const RECHECK: Duration = Duration::from_millis(250);
/// How long writing an answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps a subscription to the data plane at `socket` for as long as control runs.
pub fn spawn(socket: PathBuf, core: CoreHandle) -> std::io::Result<()> {
    thread::Builder::new()
        .name("ig-tunnel-calls".into())
        .spawn(move || {
            // The socket file (and the reader's liveness) of the current subscription.
            let mut current: Option<((u64, u64), std::sync::mpsc::Receiver<()>)> = None;
            loop {
                let id = file_id(&socket);
                let alive = current.as_ref().is_some_and(|(_, done)| {
                    !matches!(
                        done.try_recv(),
                        Err(std::sync::mpsc::TryRecvError::Disconnected)
                    )
                });
                let same = current.as_ref().map(|(i, _)| Some(*i)) == Some(id);
                if id.is_some() && !(alive && same) {
                    if let Ok(client) = CallsClient::subscribe(&socket, WRITE_TIMEOUT) {
                        let (done_tx, done_rx) = std::sync::mpsc::channel();
                        let core = core.clone();
                        let spawned = thread::Builder::new()
                            .name("ig-tunnel-subscription".into())
                            .spawn(move || {
                                serve(client, &core);
                                drop(done_tx);
                            });
                        match spawned {
                            Ok(_) => current = id.map(|i| (i, done_rx)),
                            Err(e) => log::error!("cannot start a tunnel subscription: {e}"),
                        }
                    }
                }
                thread::sleep(RECHECK);
            }
        })?;
    Ok(())
}

/// Answers one subscription's calls until the data plane closes it.
fn serve(mut client: CallsClient, core: &CoreHandle) {
    log::info!("subscribed to the data plane's tunnel calls");
    loop {
        let (id, call) = match client.next_call() {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(e) => {
                log::warn!("tunnel calls: {e}");
                break;
            }
        };
        let answer = core
            .call_blocking(|reply| Command::Tunnel(call, reply))
            .unwrap_or_else(|e| TunnelAnswer::Failed(e.to_string()));
        if let Err(e) = client.answer(id, answer) {
            log::warn!("tunnel calls: {e}");
            break;
        }
    }
    log::info!("the data plane's tunnel calls ended");
}
