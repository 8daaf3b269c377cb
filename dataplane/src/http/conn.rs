//! One client connection: serve its exchanges one after the other while it is kept
//! alive (pipelined requests are answered in order because they are served one at a
//! time), then close it or turn it into a byte tunnel after a protocol switch.
//!
//! What the connection keeps between requests is [`ConnState`] (who connected, TLS
//! facts, the endpoints whose `on_tcp_connect` ran); everything about one request
//! lives in [`Scratch`] and [`super::exchange`].

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;

use super::buf::ReadBuf;
use super::client::{Client, ClientStream, Next, Scratch};
use crate::policy::{ConnInfo, ConnState};
use crate::worker::Worker;

/// The read buffer a client connection starts with and returns to between requests
/// (nginx: client_header_buffer_size 1k); it grows while a head needs more.
const IDLE_READ_BUFFER: usize = 2 * 1024;

/// The most write-buffer capacity a connection keeps between requests.
const IDLE_WRITE_BUFFER: usize = 4 * 1024;

/// Serves a client connection until it closes or a request ends it.
pub(crate) async fn serve<S: ClientStream>(
    worker: Rc<Worker>,
    stream: S,
    peer: SocketAddr,
    url_port: u16,
    info: ConnInfo,
    fd: RawFd,
) {
    let mut client = Client {
        stream,
        rb: ReadBuf::with_capacity(IDLE_READ_BUFFER),
        peer,
        state: ConnState::new(info),
        url_port,
    };
    let mut scratch = Scratch::default();
    let mut first = true;
    loop {
        match super::exchange::serve_one(&worker, &mut client, &mut scratch, first).await {
            Next::KeepAlive => {
                first = false;
                // Between requests the connection gives back what a large head or
                // answer made it grow to.
                client.rb.shrink_if_empty(IDLE_READ_BUFFER);
                if scratch.out.capacity() > IDLE_WRITE_BUFFER {
                    scratch.out = Vec::new();
                }
            }
            Next::Close => return,
            Next::Tunnel(upstream) => {
                let fds = [fd, upstream.raw_fd()];
                Box::pin(crate::relay::pipe(
                    client.stream,
                    upstream,
                    fds,
                    worker.config.tcp_idle_timeout,
                    worker.config.tcp_buffer,
                ))
                .await;
                return;
            }
        }
    }
}
