//! The agent's relay: every stream the gateway opens for the endpoint becomes a TCP
//! connection to the local service, with bytes copied both ways.
//!
//! The SDK has a forwarder of its own; this one differs where it costs: 64 KiB copy
//! buffers instead of 8 KiB (each read becomes one muxado DATA frame, so a large
//! response crosses the tunnel in an eighth of the frames, wakeups and TLS records)
//! and Nagle off towards the service. Services behind `https://` (TLS from the agent
//! to the service) keep the SDK's forwarder, which speaks TLS to them.

use std::fmt::Display;
use std::io;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Bytes each direction of a relayed stream reads at once.
const BUFFER: usize = 64 * 1024;

/// Whether this relay serves `upstream` (plain TCP to the service: `http`, `tcp`,
/// and `tls`, whose TLS passes through untouched).
pub(super) fn serves(upstream: &url::Url) -> bool {
    matches!(upstream.scheme(), "http" | "tcp" | "tls")
}

/// Relays the tunnel's streams until it ends or the returned handle is dropped.
pub(super) fn spawn<T, C, E>(tunnel: T, upstream: &url::Url) -> io::Result<Relay>
where
    T: Stream<Item = Result<C, E>> + Unpin + Send + 'static,
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: Display + Send,
{
    let address = address(upstream)?;
    let accept = tokio::spawn(async move {
        let mut tunnel = tunnel;
        while let Some(next) = tunnel.next().await {
            match next {
                Ok(stream) => {
                    tokio::spawn(relay(stream, address.clone()));
                }
                Err(e) => {
                    log::warn!("the tunnel stopped accepting streams: {e}");
                    return;
                }
            }
        }
    });
    Ok(Relay(accept))
}

/// Stops relaying new streams when dropped (streams being relayed finish).
pub(super) struct Relay(JoinHandle<()>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `host:port` of the service, with the scheme's default port.
fn address(upstream: &url::Url) -> io::Result<String> {
    let host = upstream.host_str().unwrap_or("localhost");
    let port = match (upstream.port(), upstream.scheme()) {
        (Some(p), _) => p,
        (None, "http") => 80,
        (None, "tls") => 443,
        (None, _) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{upstream}: no port"),
            ))
        }
    };
    Ok(format!("{host}:{port}"))
}

/// One stream: a connection to the service, then bytes both ways until both ends
/// closed. A service that cannot be reached ends the stream at once, which the
/// gateway answers as a bad gateway.
async fn relay<C: AsyncRead + AsyncWrite + Unpin>(mut stream: C, address: String) {
    let mut service = match TcpStream::connect(&address).await {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot reach {address}: {e}");
            return;
        }
    };
    let _ = service.set_nodelay(true);
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut service, BUFFER, BUFFER).await
    {
        log::debug!("relay to {address} ended: {e}");
    }
}
