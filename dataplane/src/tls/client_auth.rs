//! Mutual TLS for terminate-tls: how a client's certificate is asked for and checked,
//! in the hosted service's three strategies. `require-and-verify` is rustls' WebPKI
//! verifier over the action's authorities; `require-any` and `request` take any
//! certificate (the client still proves it holds the key: the handshake signature is
//! verified) and differ in whether one is required.

use std::sync::Arc;

use innergate_table::policy::actions::terminate_tls::{ClientAuth, ClientAuthMode};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// The verifier for `auth`, or why the authorities cannot make one.
pub(crate) fn verifier(
    auth: &ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    match auth.mode {
        ClientAuthMode::RequireAndVerify => {
            let mut roots = RootCertStore::empty();
            for ca in &auth.authorities {
                roots
                    .add(ca.clone())
                    .map_err(|e| format!("a certificate authority: {e}"))?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("mutual TLS: {e}"))
        }
        ClientAuthMode::RequireAny | ClientAuthMode::Request => Ok(Arc::new(AnyCertificate {
            mandatory: auth.mode == ClientAuthMode::RequireAny,
            algorithms: provider.signature_verification_algorithms,
        })),
    }
}

/// Takes whatever certificate the client shows, once its signature proves the key.
#[derive(Debug)]
struct AnyCertificate {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
