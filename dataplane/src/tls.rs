//! TLS termination for https endpoints: certificates chosen by SNI, rustls through
//! monoio-rustls, TLS 1.2 and 1.3 only, ALPN `http/1.1`.
//!
//! The ClientHello is read first with `rustls::server::Acceptor` to learn the SNI
//! (`conn.tls.sni`), then replayed into the real handshake with `PrefixedReadIo`, so no
//! byte is lost and the live stream needs no introspection.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use monoio::io::PrefixedReadIo;
use monoio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::http::buf::ReadBuf;
use crate::worker::Worker;

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

fn file_error(path: &Path, message: impl fmt::Display) -> CertError {
    CertError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// A certificate chain and key from PEM text (a terminate-tls action's own).
pub(crate) fn pair_from_pem(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Loads a certificate chain and its key from PEM files.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| file_error(key, e))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// The certificates a data plane serves, by host name.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored under `example.com`; matches one label deep.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertStore {
    /// The default pair (`--tls-cert`/`--tls-key`) and a directory of `NAME.crt` +
    /// `NAME.key` pairs, where NAME is the host (`*.example.com` for a wildcard).
    pub fn load(
        default: Option<(&Path, &Path)>,
        dir: Option<&Path>,
    ) -> Result<CertStore, CertError> {
        let mut store = CertStore::default();
        if let Some((cert, key)) = default {
            store.default = Some(load_pair(cert, key)?);
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
            for entry in entries {
                let path = entry.map_err(|e| file_error(dir, e))?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("crt") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let pair = load_pair(&path, &path.with_extension("key"))?;
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => store.wildcard.insert(suffix.to_string(), pair),
                    None => store.exact.insert(name, pair),
                };
            }
        }
        Ok(store)
    }

    /// Whether any certificate is configured.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.exact.is_empty() && self.wildcard.is_empty()
    }

    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni.map(str::to_ascii_lowercase) {
            if let Some(pair) = self.exact.get(&name) {
                return Some(pair.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(pair) = self.wildcard.get(parent) {
                    return Some(pair.clone());
                }
            }
        }
        self.default.clone()
    }

    /// A store holding one certificate, served whatever the SNI.
    pub(crate) fn single(pair: Arc<CertifiedKey>) -> CertStore {
        CertStore {
            default: Some(pair),
            ..CertStore::default()
        }
    }

    /// A server config over these certificates, TLS 1.2 and 1.3.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        self.server_config_for(&[&rustls::version::TLS12, &rustls::version::TLS13])
    }

    /// A server config over these certificates for the given versions.
    pub(crate) fn server_config_for(
        self: &Arc<Self>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // The server's order of cipher suites wins (AEADs with forward secrecy only,
        // strongest first), as scanners and hardening guides expect.
        config.ignore_client_order = true;
        Arc::new(config)
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.pick(hello.server_name())
    }
}

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
                let sni = accepted.client_hello().server_name().map(str::to_string);
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
    crate::http::conn::serve(worker, tls, peer, url_port, server_port, "https", sni, fd).await;
}

/// Serves one connection on a public tls port: read the ClientHello for its SNI
/// (without answering it), route, run on_tcp_connect, then either replay the hello to
/// the upstream and pass bytes through, or end TLS here when `terminate-tls` asked.
pub(crate) async fn serve_tls(
    worker: Rc<Worker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    url_port: u16,
) {
    use crate::policy::{self, ConnInfo, ConnectOutcome, ExchangeState};
    use crate::routes::Target;

    let limit = worker.config.tls_handshake_timeout;
    let started = std::time::Instant::now();
    let mut rb = ReadBuf::with_capacity(4096);
    let read_hello = async {
        loop {
            match crate::sni::client_hello_sni(rb.bytes()) {
                Ok(Some(sni)) => return Some(sni),
                Ok(None) => {}
                Err(_) => return None,
            }
            match rb.fill(&mut stream, 64 * 1024).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    };
    let sni = match monoio::time::timeout(limit, read_hello).await {
        Ok(Some(Some(sni))) => sni,
        // No SNI, not TLS, closed or too slow: nothing to route by.
        _ => return,
    };
    let table = worker.table();
    let Some(pool) = table.public_by_host(url_port, &sni) else {
        return;
    };
    let entry = table.pick(pool);
    let conn = ConnInfo {
        worker: worker.id,
        scheme: "tls",
        sni: Some(sni),
        client_ip: peer.ip().to_string(),
        client_port: peer.port(),
        server_port: stream.local_addr().map_or(0, |a| a.port()),
    };
    let mut state = ExchangeState::default();
    let slot = table.route(entry).stats_slot;
    let addr = match policy::run_connect(&table, entry, &conn, &mut state) {
        ConnectOutcome::Proceed(Target::Upstream(addr)) => addr,
        _ => return,
    };
    let termination = state
        .terminate
        .and_then(|(idx, action)| table.termination(idx, action));
    drop(table);
    // Without terminate-tls the client's TLS passes through: the upstream is reached
    // over plain TCP whatever its scheme says.
    let target = match termination {
        Some(_) => addr,
        None => crate::http::upstream::UpstreamAddr {
            addr: addr.addr,
            tls: None,
        },
    };
    let timeout = worker.config.upstream_connect_timeout;
    let upstream =
        match crate::http::upstream::connect(&target, timeout, &worker.upstream_tls, false).await {
            Ok(upstream) => upstream,
            Err(e) => {
                worker.stats.borrow_mut().upstream_connect_errors += 1;
                log::debug!(
                    "tls port {url_port}: upstream {}: {}",
                    target.addr,
                    e.message()
                );
                return;
            }
        };
    let _ = stream.set_nodelay(true);
    let fds = {
        use std::os::fd::AsRawFd;
        [stream.as_raw_fd(), upstream.raw_fd()]
    };
    let hello = rb.bytes().to_vec();
    let hello_len = hello.len() as u64;
    let idle = worker.config.tcp_idle_timeout;
    let moved = match termination {
        Some(config) => {
            let io = PrefixedReadIo::new(stream, io::Cursor::new(hello));
            let remaining = limit.saturating_sub(started.elapsed());
            let acceptor = monoio_rustls::TlsAcceptor::from(config);
            let accept = acceptor.accept(io);
            match monoio::time::timeout(remaining, accept).await {
                Ok(Ok(tls)) => {
                    crate::tcp::pipe(tls, upstream, fds, idle, worker.config.tcp_buffer).await
                }
                _ => {
                    log::debug!("tls port {url_port}: handshake with {peer} failed");
                    (0, 0)
                }
            }
        }
        None => {
            let mut upstream = upstream;
            let mut hello = hello;
            let splice = worker.config.tcp_forwarding == crate::config::Forwarding::Splice;
            if crate::http::buf::write_all(&mut upstream, &mut hello)
                .await
                .is_err()
            {
                return;
            }
            let (a_to_b, b_to_a) = match upstream {
                crate::http::upstream::UpstreamStream::Plain(plain) if splice => {
                    crate::tcp::splice_pipe(stream, plain, idle).await
                }
                upstream => {
                    crate::tcp::pipe(stream, upstream, fds, idle, worker.config.tcp_buffer).await
                }
            };
            (a_to_b + hello_len, b_to_a)
        }
    };
    worker
        .stats
        .borrow_mut()
        .record_stream(slot, moved.0, moved.1);
}
