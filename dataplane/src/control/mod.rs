//! The control link server: a unix socket where control pushes tables and asks what is
//! served. One thread per connection; each message is answered before the next is read.
//! Beside it: the [`supervisor`] that applies tables to the workers, the [`state`] file
//! that caches the last one, and the [`admin`] listener (health and metrics).

pub(crate) mod admin;
pub(crate) mod calls;
pub(crate) mod state;
pub(crate) mod supervisor;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use innergate_table::tunnel_sessions::{SessionCommand, NO_SUCH_SESSION};
use innergate_table::wire::{read_frame, write_frame, Message};

use calls::ControlCalls;
use supervisor::Supervisor;

use crate::tunnel::index::SessionIndex;
use crate::worker::WorkerMsg;

/// Binds the control socket, replacing a stale one, and a live one only when `takeover`
/// says a new process is taking over from a running one (an upgrade): the old process
/// keeps the connections it has; control's next connection reaches the new one.
pub(crate) fn bind(path: &Path, takeover: bool) -> io::Result<UnixListener> {
    if path.exists() {
        if !takeover && UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running data plane", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    // The socket controls every endpoint: owner only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub(crate) use innergate_table::link::socket_identity as file_id;

/// What the control link serves about tunnels: the calls sessions make to control,
/// and the index of sessions that control lists and sends commands to.
#[derive(Clone, Debug)]
pub(crate) struct Tunnels {
    pub(crate) calls: Arc<ControlCalls>,
    pub(crate) index: Arc<SessionIndex>,
}

/// How long control waits for an agent to answer a command (the session's own RPC
/// deadline, and a margin for the hop to its worker).
const COMMAND_WAIT: Duration = Duration::from_secs(15);

/// Serves control connections until the process ends.
pub(crate) fn spawn(
    listener: UnixListener,
    supervisor: Arc<Mutex<Supervisor>>,
    tunnels: Tunnels,
) -> io::Result<()> {
    thread::Builder::new()
        .name("ig-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        let supervisor = supervisor.clone();
                        let tunnels = tunnels.clone();
                        let spawned = thread::Builder::new()
                            .name("ig-control-conn".into())
                            .spawn(move || serve(stream, &supervisor, &tunnels));
                        if let Err(e) = spawned {
                            log::error!("control link: cannot start a thread: {e}");
                        }
                    }
                    Err(e) => log::warn!("control link: accept: {e}"),
                }
            }
        })?;
    Ok(())
}

fn serve(mut stream: UnixStream, supervisor: &Mutex<Supervisor>, tunnels: &Tunnels) {
    loop {
        let payload = match read_frame(&mut stream) {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(e) => {
                log::warn!("control link: {e}");
                return;
            }
        };
        let reply = match Message::read(&payload) {
            Ok(Message::ApplyTable(table)) => {
                let version = table.version;
                let mut supervisor = supervisor.lock().unwrap_or_else(|e| e.into_inner());
                match supervisor.apply(&table, true) {
                    Ok(ack) => Message::Applied(ack),
                    Err(reason) => {
                        log::warn!("refused table version {version}: {reason}");
                        Message::Refused { version, reason }
                    }
                }
            }
            Ok(Message::Subscribe) => {
                serve_calls(stream, &tunnels.calls);
                return;
            }
            Ok(Message::SessionsRequest) => Message::Sessions(tunnels.index.list()),
            Ok(Message::SessionCommand { session, command }) => Message::CommandResult {
                error: match send_command(supervisor, &tunnels.index, &session, command) {
                    Ok(()) => String::new(),
                    Err(e) => e,
                },
            },
            Ok(Message::StatusRequest) => Message::Status(
                supervisor
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .status(),
            ),
            Ok(other) => Message::Refused {
                version: 0,
                reason: format!("unexpected message on the control link: {other:?}"),
            },
            Err(e) => Message::Refused {
                version: 0,
                reason: format!("undecodable message: {e}"),
            },
        };
        if let Err(e) = write_frame(&mut stream, &reply) {
            log::warn!("control link: {e}");
            return;
        }
    }
}

/// Hands `command` to the worker that owns `session` and waits for the agent's
/// answer (this connection's thread waits; no worker does).
fn send_command(
    supervisor: &Mutex<Supervisor>,
    index: &SessionIndex,
    session: &str,
    command: SessionCommand,
) -> Result<(), String> {
    let (worker, local) = index
        .locate(session)
        .ok_or_else(|| format!("{NO_SUCH_SESSION} {session}"))?;
    let (reply, answer) = flume::bounded(1);
    let msg = WorkerMsg::SessionCommand {
        session: local,
        command,
        reply,
    };
    let sent = supervisor
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send_to_worker(worker, msg);
    if !sent {
        return Err("the session's worker is gone".into());
    }
    match answer.recv_timeout(COMMAND_WAIT) {
        Ok(done) => done,
        Err(_) => Err("the agent did not answer in time".into()),
    }
}

/// Serves a subscribed connection: calls out (from a writer thread), answers in.
fn serve_calls(mut stream: UnixStream, calls: &ControlCalls) {
    let (outbox, queued) = flume::unbounded::<Message>();
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            log::warn!("control link: {e}");
            return;
        }
    };
    let written = thread::Builder::new()
        .name("ig-control-calls".into())
        .spawn(move || {
            for msg in queued.iter() {
                if write_frame(&mut writer, &msg).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = written {
        log::error!("control link: cannot start a thread: {e}");
        return;
    }
    calls.subscribe(outbox.clone());
    log::info!("control subscribed to tunnel calls");
    loop {
        match read_frame(&mut stream) {
            Ok(Some(payload)) => match Message::read(&payload) {
                Ok(Message::TunnelAnswer { id, answer }) => calls.answer(id, answer),
                Ok(other) => log::warn!("control link: unexpected {other:?} on the calls link"),
                Err(e) => log::warn!("control link: undecodable answer: {e}"),
            },
            Ok(None) => break,
            Err(e) => {
                log::warn!("control link (calls): {e}");
                break;
            }
        }
    }
    calls.unsubscribe(&outbox);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
