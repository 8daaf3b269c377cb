//! The certificates a data plane serves (https endpoints and terminate-tls), chosen by
//! SNI, and the rustls server configs over them: TLS 1.2 and 1.3 only, ALPN `http/1.1`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use innergate_table::policy::actions::terminate_tls::ClientAuth;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

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

    /// The https server over these certificates, TLS 1.2 and 1.3.
    pub(crate) fn server(self: &Arc<Self>) -> TlsServer {
        TlsServer {
            config: self.server_config(),
            certs: self.clone(),
        }
    }

    /// A terminate-tls server over these certificates: the given versions, asking
    /// clients for theirs where `client_auth` says; `Err` when its authorities make
    /// no verifier.
    pub(crate) fn server_with(
        self: &Arc<Self>,
        versions: &[&'static rustls::SupportedProtocolVersion],
        client_auth: Option<&ClientAuth>,
    ) -> Result<TlsServer, String> {
        Ok(TlsServer {
            config: self.server_config_with(versions, client_auth)?,
            certs: self.clone(),
        })
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
        self.server_config_with(versions, None)
            .expect("without client authentication nothing can fail")
    }

    /// A server config over these certificates that also asks clients for theirs
    /// (mutual TLS, terminate-tls); `Err` when the authorities make no verifier.
    pub(crate) fn server_config_with(
        self: &Arc<Self>,
        versions: &[&'static rustls::SupportedProtocolVersion],
        client_auth: Option<&ClientAuth>,
    ) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3");
        let builder = match client_auth {
            None => builder.with_no_client_auth(),
            Some(auth) => {
                builder.with_client_cert_verifier(super::client_auth::verifier(auth, &provider)?)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // The server's order of cipher suites wins (AEADs with forward secrecy only,
        // strongest first), as scanners and hardening guides expect.
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }
}

/// A server config with the certificates it serves from. Which certificate a
/// handshake presented is not kept by the session; it is worked out again from the
/// store by the SNI (the same pure choice the resolver made), for `conn.tls.server.*`.
#[derive(Clone, Debug)]
pub(crate) struct TlsServer {
    pub(crate) config: Arc<ServerConfig>,
    certs: Arc<CertStore>,
}

impl TlsServer {
    /// The leaf certificate a handshake asking for `sni` was shown.
    pub(crate) fn presented(&self, sni: Option<&str>) -> Option<CertificateDer<'static>> {
        self.certs
            .pick(sni)
            .and_then(|pair| pair.cert.first().cloned())
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.pick(hello.server_name())
    }
}
