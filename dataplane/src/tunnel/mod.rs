//! Agent tunnels: agents dial out to the tunnel listener and bind endpoints over the
//! hosted service's own agent protocol, so its SDKs work unchanged; the data plane
//! then sends those endpoints' upstream traffic over streams it opens on their
//! sessions. HTTP parsing and policy stay here; the agent relays bytes.
//!
//! The path of a session: [`listener`] accepts and hands it to [`session`] (TLS,
//! Auth, Bind, heartbeats) over a [`mux`] of [`frame`]s with [`proto`] messages;
//! [`registry`] records which sessions carry which endpoints; a request's upstream
//! step calls [`open`], which uses a session of its own worker or, through
//! [`handover`], one of another worker.

pub(crate) mod channel;
pub(crate) mod frame;
pub(crate) mod handover;
pub(crate) mod listener;
pub(crate) mod mux;
pub(crate) mod online;
pub(crate) mod proto;
pub(crate) mod registry;
pub(crate) mod session;
pub(crate) mod stream;

use std::io;
use std::rc::Rc;
use std::time::Duration;

use crate::error::ProxyError;
use crate::worker::{Worker, WorkerMsg};
use handover::Handover;
use mux::MuxStream;
pub(crate) use stream::TunnelStream;

/// How long a hand-over to another worker may take.
const HANDOVER_DEADLINE: Duration = Duration::from_secs(5);

/// Opens a stream on a session of this worker that holds `endpoint`.
pub(crate) async fn open_local(
    worker: &Worker,
    endpoint: &str,
    client_addr: &str,
) -> io::Result<MuxStream> {
    let held = worker
        .tunnels
        .pick_local(endpoint)
        .ok_or(io::ErrorKind::NotFound)?;
    let stream = held.mux.open()?;
    let preamble = proto::proxy_preamble(&proto::ProxyHeader {
        id: endpoint,
        client_addr,
        proto: held.proto,
        edge_type: "",
        passthrough_tls: held.proto == "tls",
    });
    stream.send_all(&preamble).await?;
    Ok(stream)
}

/// Opens a stream to `endpoint`'s agent: on this worker's session if it has one,
/// else on another worker's; offline when no session holds it.
pub(crate) async fn open(
    worker: &Worker,
    endpoint: &str,
    client_addr: &str,
) -> Result<TunnelStream, ProxyError> {
    if let Ok(stream) = open_local(worker, endpoint, client_addr).await {
        return Ok(TunnelStream::Local(stream));
    }
    let Some(other) = worker.tunnels.pick_remote(endpoint, worker.id) else {
        return Err(ProxyError::AgentOffline);
    };
    let (reply, answer) = flume::bounded(1);
    let asked = worker.send_to_worker(
        other,
        WorkerMsg::Handover(Handover {
            endpoint: endpoint.into(),
            client_addr: client_addr.to_string(),
            reply,
        }),
    );
    if !asked {
        return Err(ProxyError::AgentOffline);
    }
    match monoio::time::timeout(HANDOVER_DEADLINE, answer.recv_async()).await {
        Ok(Ok(Some(stream))) => {
            worker.stats.borrow_mut().tunnel_handovers += 1;
            Ok(TunnelStream::Handed(stream))
        }
        _ => Err(ProxyError::AgentOffline),
    }
}

/// Serves a hand-over that another worker asked of this one.
pub(crate) fn serve_handover(worker: Rc<Worker>, req: Handover) {
    spawn("a tunnel hand-over", handover::serve(worker, req));
}

/// Runs a task of a session confined: a panic in it ends that task (its streams see
/// their session or stream end), never the worker.
pub(crate) fn spawn<F>(what: &'static str, task: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    monoio::spawn(async move {
        if let Err(panic) = crate::confine::confine(Box::pin(task)).await {
            log::error!(
                "panic in {what}: {}; ending that task only",
                crate::confine::message(&*panic)
            );
        }
    });
}

/// Feeds untrusted bytes to the agent protocol's parsers, as a hostile agent could:
/// frames until one is refused, and the same bytes as an RPC request. The fuzz
/// target's entry point; nothing else calls it.
#[doc(hidden)]
pub fn parse_untrusted(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((_, used))) = frame::decode(rest) {
        rest = &rest[used..];
    }
    if let Ok(Some(value)) = proto::complete_json(data) {
        let _ = proto::parse_bind(&value);
        let _ = serde_json::from_value::<proto::Auth>(value);
    }
}
