//! The tunnel listener of one worker: its own SO_REUSEPORT socket on the tunnel
//! address, each accepted connection a session of this worker. Sessions count as
//! connections (the per-worker limit covers them) and are confined like any other
//! connection task: a panic ends that session only.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpListener;

use crate::confine::confine;
use crate::worker::Worker;

/// Accepts agent sessions until `stop` fires or its sender is dropped.
pub(crate) async fn accept_loop(
    worker: Rc<Worker>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: flume::Receiver<()>,
) {
    let mut stop = std::pin::pin!(stop.recv_async());
    loop {
        monoio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !worker.admit_connection() {
                        continue;
                    }
                    let count = worker.count_connection();
                    let worker = worker.clone();
                    let tls = tls.clone();
                    monoio::spawn(async move {
                        let _count = count;
                        let serve = std::pin::pin!(super::session::serve(
                            worker.clone(),
                            stream,
                            peer,
                            tls
                        ));
                        if let Err(panic) = confine(serve).await {
                            worker.stats.borrow_mut().panics += 1;
                            log::error!(
                                "panic in the tunnel session of {peer}: {}; ending this \
                                 session only",
                                crate::confine::message(&*panic)
                            );
                        }
                    });
                }
                Err(e) => {
                    log::warn!("accept on the tunnel port: {e}");
                    monoio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
