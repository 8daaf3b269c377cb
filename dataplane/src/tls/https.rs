//! https endpoints: the ClientHello is read first with `rustls::server::Acceptor` to
//! learn the SNI (`conn.tls.sni`), then replayed into the real handshake with
//! `PrefixedReadIo`, so no byte is lost and the live stream needs no introspection;
//! then the connection is HTTP.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::PrefixedReadIo;
use monoio::net::TcpStream;

use crate::http::buf::ReadBuf;
use crate::policy::ConnInfo;
use crate::worker::Worker;

/// Reads until a whole ClientHello is buffered; returns the bytes read and the SNI.
async fn peek_client_hello(stream: &mut TcpStream) -> io::Result<(Vec<u8>, Option<String>)> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rb = ReadBuf::with_capacity(4096);
    let mut fed = 0;
    loop {
        if rb.fill(stream, 64 * 1024).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut fresh = &rb.bytes()[fed..];
        while !fresh.is_empty() {
            acceptor.read_tls(&mut fresh)?;
        }
        fed = rb.len();
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                // DNS names are case-insensitive; routing compares them lowercased.
                let sni = accepted
                    .client_hello()
                    .server_name()
                    .map(str::to_ascii_lowercase);
                return Ok((rb.bytes().to_vec(), sni));
            }
            Ok(None) => {}
            Err((e, mut alert)) => {
                // Tell the client why (a protocol_version or handshake_failure alert),
                // as a TLS server should, before closing.
                let mut out = Vec::new();
                if alert.write_all(&mut out).is_ok() && !out.is_empty() {
                    let _ = crate::http::buf::write_all(stream, &mut out).await;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

/// Serves one connection on an https port: handshake within the timeout, then HTTP.
pub(crate) async fn serve_https(
    worker: Rc<Worker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    url_port: u16,
) {
    let Some(config) = worker.tls.clone() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let server_port = stream.local_addr().map_or(0, |a| a.port());
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    // A slow or silent client gets the handshake timeout, then the socket closes (the
    // futures are dropped with it, and the stream is never read again).
    let handshake = async {
        let (hello, sni) = peek_client_hello(&mut stream).await?;
        let io = PrefixedReadIo::new(stream, io::Cursor::new(hello));
        let tls = monoio_rustls::TlsAcceptor::from(config)
            .accept(io)
            .await
            .map_err(io::Error::other)?;
        Ok::<_, io::Error>((tls, sni))
    };
    let (tls, sni) =
        match monoio::time::timeout(worker.config.tls_handshake_timeout, handshake).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                log::debug!("tls handshake with {peer}: {e}");
                return;
            }
            Err(_) => {
                log::debug!("tls handshake with {peer}: timed out");
                return;
            }
        };
    let info = ConnInfo::new(worker.id, "https", sni, peer, server_port);
    crate::http::conn::serve(worker, tls, peer, url_port, info, fd).await;
}
