//! What a worker's message loop does for tunnels: accept agent sessions on the
//! tunnel listener, serve hand-overs for other workers, apply a new table to its
//! sessions (revoked authtokens, deleted endpoints), end sessions at a drain.

use std::rc::Rc;
use std::sync::Arc;

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

/// A drain: agents are told to go (they reconnect to the process taking over).
pub(super) fn end_sessions(worker: &Worker) {
    for session in worker.tunnels.sessions() {
        session.mux.close(
            crate::tunnel::frame::ErrorCode::None,
            "the gateway restarts",
        );
    }
}
