//! Hand-over: a request that arrives on a worker without a session for its endpoint
//! borrows a stream of another worker's session. The owning worker opens the stream
//! and pumps it through two bounded channels ([`super::channel`]); the asking worker
//! reads and writes the channels as if they were the stream. This is the one place
//! where tunnel bytes cross threads: innergate's own agent opens a session per worker
//! to avoid it, a foreign SDK's single session needs it.

use std::rc::Rc;

use super::channel::{self, Chunk, Handover};
use super::mux::WINDOW;
use crate::worker::Worker;

/// On the owning worker: opens a stream for `req` and pumps it.
pub(crate) async fn serve(worker: Rc<Worker>, req: Handover) {
    let stream = match super::open::open_local(&worker, &req.endpoint, &req.client_addr).await {
        Ok(s) => Rc::new(s),
        Err(_) => {
            let _ = req.reply.send(None);
            return;
        }
    };
    let (ends, up_rx, down_tx) = channel::pair();
    if req.reply.send(Some(ends)).is_err() {
        return;
    }
    let up = {
        let stream = stream.clone();
        async move {
            loop {
                match up_rx.recv_async().await {
                    Ok(Chunk::Data(bytes)) => {
                        if stream.send_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Ok(Chunk::Fin) => {
                        stream.finish();
                        return;
                    }
                    // The asking side went away without finishing: an abort.
                    Err(_) => {
                        stream.reset(super::frame::ErrorCode::StreamCancelled);
                        return;
                    }
                }
            }
        }
    };
    let down = {
        let stream = stream.clone();
        async move {
            let mut buf = Vec::with_capacity(channel::CHUNK.min(WINDOW as usize));
            loop {
                match stream.recv_into(&mut buf).await {
                    Ok(0) => {
                        let _ = down_tx.send_async(Chunk::Fin).await;
                        return;
                    }
                    Ok(_) => {
                        let chunk = std::mem::replace(&mut buf, Vec::with_capacity(channel::CHUNK));
                        if down_tx.send_async(Chunk::Data(chunk)).await.is_err() {
                            stream.reset(super::frame::ErrorCode::StreamCancelled);
                            return;
                        }
                    }
                    // Dropping the sender tells the asking side the stream broke.
                    Err(_) => return,
                }
            }
        }
    };
    monoio::join!(up, down);
}

/// Serves a hand-over that another worker asked of this one.
pub(crate) fn serve_request(worker: Rc<Worker>, req: Handover) {
    crate::confine::spawn("a tunnel hand-over", serve(worker, req));
}
