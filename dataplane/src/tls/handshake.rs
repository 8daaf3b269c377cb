//! A server handshake in two steps, so that what comes between can choose how it
//! ends: [`read_client_hello`] reads the ClientHello (its SNI routes the connection
//! and picks the endpoint's terminate-tls settings), then [`complete`] finishes the
//! handshake with the chosen config and hands over the stream together with what
//! the handshake established ([`TlsFacts`]), which a TLS stream would keep to itself.

use std::io;

use monoio::io::PrefixedReadIo;
use monoio::net::TcpStream;
use rustls::server::{Accepted, Acceptor};

use super::certs::TlsServer;
use super::facts::TlsFacts;
use crate::http::buf::{write_all, ReadBuf};

/// The most ClientHello bytes read before the client is refused.
const MAX_HELLO: usize = 64 * 1024;

/// A terminated TLS connection: the socket with the bytes read past the handshake
/// put back in front of it.
pub(crate) type ServerTls =
    monoio_rustls::ServerTlsStream<PrefixedReadIo<TcpStream, io::Cursor<Vec<u8>>>>;

/// A ClientHello, read and parsed, the handshake not yet answered.
pub(crate) struct Hello {
    accepted: Accepted,
    /// The server name asked for, lowercased (DNS names are case-insensitive).
    pub(crate) sni: Option<String>,
    /// The records it came in, for its fingerprint.
    records: Vec<u8>,
}

/// Reads until a whole ClientHello is buffered. A client that sends something else
/// is told why (a protocol_version or handshake_failure alert), as a TLS server
/// should, before the error is returned.
pub(crate) async fn read_client_hello(stream: &mut TcpStream) -> io::Result<Hello> {
    let mut acceptor = Acceptor::default();
    let mut rb = ReadBuf::with_capacity(4096);
    let mut fed = 0;
    loop {
        if rb.fill(stream, MAX_HELLO).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut fresh = &rb.bytes()[fed..];
        while !fresh.is_empty() {
            acceptor.read_tls(&mut fresh)?;
        }
        fed = rb.len();
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted
                    .client_hello()
                    .server_name()
                    .map(str::to_ascii_lowercase);
                return Ok(Hello {
                    accepted,
                    sni,
                    records: rb.bytes().to_vec(),
                });
            }
            Ok(None) => {}
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                if alert.write_all(&mut out).is_ok() {
                    let _ = write_all(stream, &mut out).await;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

/// Finishes the handshake that `hello` began, as `server` says.
pub(crate) async fn complete(
    mut stream: TcpStream,
    hello: Hello,
    server: &TlsServer,
) -> io::Result<(ServerTls, TlsFacts)> {
    let mut out = Vec::new();
    let mut session = match hello.accepted.into_connection(server.config.clone()) {
        Ok(session) => session,
        Err((e, mut alert)) => {
            if alert.write_all(&mut out).is_ok() {
                let _ = write_all(&mut stream, &mut out).await;
            }
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    };
    // Bytes read from the socket that the session has not taken yet.
    let mut unfed = ReadBuf::with_capacity(4096);
    loop {
        while session.wants_write() {
            session.write_tls(&mut out)?;
            write_all(&mut stream, &mut out).await?;
        }
        if !session.is_handshaking() {
            break;
        }
        if unfed.is_empty() && unfed.fill(&mut stream, MAX_HELLO).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut bytes = unfed.bytes();
        let taken = session.read_tls(&mut bytes)?;
        if taken == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handshake too large",
            ));
        }
        unfed.consume(taken);
        if let Err(e) = session.process_new_packets() {
            // Whatever alert the session queued tells the client why.
            if session.write_tls(&mut out).is_ok() {
                let _ = write_all(&mut stream, &mut out).await;
            }
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    let certificate = server.presented(hello.sni.as_deref());
    let facts = TlsFacts::of(&session, hello.records, certificate);
    let rest = unfed.bytes().to_vec();
    let io = PrefixedReadIo::new(stream, io::Cursor::new(rest));
    Ok((monoio_rustls::ServerTlsStream::new(io, session), facts))
}
