//! https endpoints: the ClientHello is read first, its SNI (`conn.tls.sni`) names the
//! endpoint, whose terminate-tls (if its on_tcp_connect has one) sets how the
//! handshake ends: versions, certificate, mutual TLS. Then the connection is HTTP,
//! with what the handshake established readable as `conn.tls.*`.

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::net::TcpStream;

use super::certs::TlsServer;
use super::handshake;
use crate::policy::ConnInfo;
use crate::worker::Worker;

/// Serves one connection on an https port: handshake within the timeout, then HTTP.
pub(crate) async fn serve_https(
    worker: Rc<Worker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    url_port: u16,
) {
    let Some(default) = worker.tls.clone() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let server_port = stream.local_addr().map_or(0, |a| a.port());
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    // A slow or silent client gets the handshake timeout, then the socket closes (the
    // futures are dropped with it, and the stream is never read again).
    let handshake = async {
        let hello = handshake::read_client_hello(&mut stream).await?;
        let mut info = ConnInfo::new(worker.id, "https", hello.sni.clone(), peer, server_port);
        let server = endpoint_server(&worker, url_port, &info).unwrap_or(default);
        let (tls, facts) = handshake::complete(stream, hello, &server).await?;
        info.tls = Some(Box::new(facts));
        Ok::<_, std::io::Error>((tls, info))
    };
    let (tls, info) =
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
    crate::http::conn::serve(worker, tls, peer, url_port, info, fd).await;
}

/// The TLS server of the terminate-tls of the endpoint the SNI names, where its
/// on_tcp_connect has one for this connection.
fn endpoint_server(worker: &Worker, url_port: u16, info: &ConnInfo) -> Option<TlsServer> {
    let table = worker.table();
    let pool = table.public_by_host(url_port, info.sni.as_deref()?)?;
    let entry = table.pick(pool);
    let action = crate::policy::handshake_termination(&table, entry, info)?;
    table.route(entry).termination(action)
}
