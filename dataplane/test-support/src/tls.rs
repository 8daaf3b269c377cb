//! A rustls client for tests (ring provider, as the crates use), trusting only the
//! certificates a test made.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::Response;
use crate::process::TIMEOUT;

/// A client TLS connection over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A client config that trusts `roots` and nothing else, with rustls's safe default
/// protocol versions (TLS 1.2 and 1.3).
pub fn tls_client_config(roots: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("a valid CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}

/// [`tls_client_config`] trusting the one certificate in `ca_pem`.
pub fn tls_client_config_pem(ca_pem: &[u8]) -> Arc<ClientConfig> {
    let ca = CertificateDer::from_pem_slice(ca_pem).expect("a PEM certificate");
    tls_client_config(&[ca])
}

/// Connects to `addr` and starts a handshake naming `sni` (it completes on the first
/// read or write); reads time out after [`TIMEOUT`].
#[track_caller]
pub fn tls_connect(config: &Arc<ClientConfig>, addr: SocketAddr, sni: &str) -> TlsStream {
    let name = ServerName::try_from(sni.to_string()).expect("a valid server name");
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    StreamOwned::new(conn, tcp)
}

/// `GET /` with `Host: host` and `Connection: close` over TLS naming `sni`; the
/// response and the certificate the server presented.
#[track_caller]
pub fn tls_get(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    host: &str,
) -> (Response, CertificateDer<'static>) {
    let mut tls = tls_connect(config, addr, sni);
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // The server may close without close_notify after Connection: close: an error
    // then ends the response as EOF would.
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let served = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned();
    let response = Response::read_from(&mut raw.as_slice()).unwrap_or_else(|| {
        panic!(
            "no HTTP response over TLS from {addr}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    });
    (response, served)
}
