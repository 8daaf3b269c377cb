//! TLS to upstreams (`https://` and `tls://` upstream URLs): verified against the
//! system's roots plus `--upstream-ca`, unless `--upstream-tls-insecure` says otherwise
//! for development.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::tls::CertError;

/// Client configs for upstream TLS: HTTP (ALPN `http/1.1`) and byte streams.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamTls {
    pub(crate) http: Arc<ClientConfig>,
    pub(crate) stream: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// Builds the configs: system roots and `extra_ca`, or no verification at all.
    pub(crate) fn new(extra_ca: Option<&Path>, insecure: bool) -> Result<UpstreamTls, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .expect("ring supports TLS 1.2 and 1.3");
        let config = if insecure {
            log::warn!("TLS to upstreams is not verified (--upstream-tls-insecure)");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if let Some(path) = extra_ca {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| CertError::File {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?
                    .flatten();
                roots.add_parsable_certificates(certs);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let mut http = config.clone();
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            http: Arc::new(http),
            stream: Arc::new(config),
        })
    }
}

/// Accepts any certificate: for development only, asked for explicitly.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
