//! One self-signed certificate (ECDSA P-256) for `bench.test` and `*.bench.test`,
//! written as PEM files that innergate, nginx and HAProxy all load, and the rustls
//! configurations of the bench's own TLS clients and sink; and, for tunnel
//! listeners, a CA with a certificate for 127.0.0.1 signed by it.

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

/// A CA and a certificate for 127.0.0.1 and `localhost` signed by it, for the tunnel
/// listeners (innergate's, rathole's TLS transport) that agents verify: rustls takes
/// no self-signed CA certificate as a server's, so the server's is a leaf.
#[derive(Debug)]
pub struct TunnelCerts {
    /// The CA certificate (PEM), what agents trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl TunnelCerts {
    /// Makes the CA and the server certificate and writes their files into `dir`.
    pub fn create(dir: &Path) -> Result<TunnelCerts> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "innergate-bench tunnel CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?
            .signed_by(&key, &issuer)?;
        let files = TunnelCerts {
            ca: dir.join("tunnel-ca.crt"),
            cert: dir.join("tunnel.crt"),
            key: dir.join("tunnel.key"),
        };
        std::fs::write(&files.ca, ca_cert.pem())?;
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}
