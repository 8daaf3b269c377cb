//! Opening a stream towards an agent for a request's upstream step: on a session of
//! this worker that holds the endpoint, or, through a hand-over, on another worker's.

use std::io;
use std::time::Duration;

use super::channel::Handover;
use super::mux::MuxStream;
use super::proto;
use super::stream::TunnelStream;
use crate::error::ProxyError;
use crate::worker::{Worker, WorkerMsg};

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
