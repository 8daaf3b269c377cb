//! What a worker's message loop does for tunnels: accept agent sessions on the
//! tunnel listener, serve hand-overs for other workers, apply a new table to its
//! sessions (revoked authtokens, deleted endpoints), end sessions at a drain.

use std::rc::Rc;
use std::sync::Arc;

use innergate_table::tunnel_sessions::SessionCommand;
use monoio::net::TcpListener;

use super::Worker;
use crate::tunnel::channel::Handover;

/// Starts accepting sessions on `listener`; dropping the returned sender stops it.
pub(super) fn accept(
    worker: &Rc<Worker>,
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> Option<flume::Sender<()>> {
    let adopted = if monoio::utils::is_legacy() {
        listener.set_nonblocking(true).and(Ok(listener))
    } else {
        Ok(listener)
    }
    .and_then(TcpListener::from_std);
    match adopted {
        Ok(listener) => {
            let (stop_tx, stop_rx) = flume::bounded(1);
            monoio::spawn(crate::tunnel::listener::accept_loop(
                worker.clone(),
                listener,
                tls,
                stop_rx,
            ));
            Some(stop_tx)
        }
        Err(e) => {
            log::error!(
                "worker {}: cannot adopt the tunnel listener: {e}",
                worker.id
            );
            None
        }
    }
}

/// A new table is served: sessions follow it.
pub(super) fn on_table(worker: &Rc<Worker>) {
    crate::tunnel::session::on_table(worker);
}

/// Opens a stream on this worker's session for another worker's request.
pub(super) fn serve_handover(worker: &Rc<Worker>, req: Handover) {
    crate::tunnel::handover::serve_request(worker.clone(), req);
}

/// Sends `command` to the agent of session `session` and answers on `reply`.
pub(super) fn command(
    worker: &Rc<Worker>,
    session: u64,
    command: SessionCommand,
    reply: flume::Sender<Result<(), String>>,
) {
    let Some(info) = worker.tunnels.session(session) else {
        let _ = reply.send(Err("the session ended".into()));
        return;
    };
    crate::confine::spawn("a command for an agent", async move {
        let done = crate::tunnel::command::send(&info.mux, &command).await;
        log::info!(
            "tunnel session {}: {} command: {}",
            info.id,
            command.name(),
            done.as_ref().map_or_else(String::as_str, |()| "done")
        );
        let _ = reply.send(done);
    });
}

/// A drain: agents are told to go (they reconnect to the process taking over).
pub(super) fn end_sessions(worker: &Worker) {
    for session in worker.tunnels.sessions() {
        session.mux.close(
            crate::tunnel::frame::ErrorCode::None,
            "the gateway restarts",
        );
    }
}
