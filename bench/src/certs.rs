//! One self-signed certificate (ECDSA P-256) for `bench.test` and `*.bench.test`,
//! written as PEM files that innergate, nginx and HAProxy all load, and the rustls
//! configurations of the bench's own TLS clients and sink.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The certificate's files and the configurations built from it.
#[derive(Debug)]
pub struct Certs {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Certificate then key in one file, as HAProxy's `crt` wants.
    pub combined: PathBuf,
    /// A client configuration trusting only this certificate.
    pub client: Arc<rustls::ClientConfig>,
    /// A server configuration presenting it.
    pub server: Arc<rustls::ServerConfig>,
}

impl Certs {
    /// Makes the certificate and writes its files into `dir`.
    pub fn create(dir: &Path) -> Result<Certs> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = rcgen::KeyPair::generate()?;
        let params =
            rcgen::CertificateParams::new(vec!["bench.test".into(), "*.bench.test".into()])?;
        let signed = params.self_signed(&pair)?;
        let (cert_pem, key_pem) = (signed.pem(), pair.serialize_pem());
        let cert = dir.join("bench.crt");
        let key = dir.join("bench.key");
        let combined = dir.join("bench.pem");
        std::fs::write(&cert, &cert_pem)?;
        std::fs::write(&key, &key_pem)?;
        std::fs::write(&combined, format!("{cert_pem}{key_pem}"))?;

        let der: CertificateDer<'static> = signed.der().clone();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone())?;
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![der], key_der)
            .context("server certificate")?;
        Ok(Certs {
            cert,
            key,
            combined,
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}
