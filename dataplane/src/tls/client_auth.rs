//! Mutual TLS for terminate-tls: how a client's certificate is asked for and checked,
//! in the hosted service's three strategies. `require-and-verify` is rustls' WebPKI
//! verifier over the action's authorities (with X.509 v1 leaves, which WebPKI
//! refuses, checked here); `require-any` and `request` take any
//! certificate (the client still proves it holds the key: the handshake signature is
//! verified) and differ in whether one is required.

use std::sync::Arc;

use innergate_table::policy::actions::terminate_tls::{ClientAuth, ClientAuthMode};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

/// The verifier for `auth`, or why the authorities cannot make one.
pub(crate) fn verifier(
    auth: &ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let algorithms = provider.signature_verification_algorithms;
    match auth.mode {
        ClientAuthMode::RequireAndVerify => {
            let mut roots = RootCertStore::empty();
            for ca in &auth.authorities {
                roots
                    .add(ca.clone())
                    .map_err(|e| format!("a certificate authority: {e}"))?;
            }
            let webpki =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("mutual TLS: {e}"))?;
            Ok(Arc::new(Authorities {
                webpki,
                authorities: auth.authorities.clone(),
                algorithms,
            }))
        }
        ClientAuthMode::RequireAny | ClientAuthMode::Request => Ok(Arc::new(AnyCertificate {
            mandatory: auth.mode == ClientAuthMode::RequireAny,
            algorithms,
        })),
    }
}

/// Wants a certificate the authorities issued: rustls' WebPKI verifier, which takes
/// X.509 v3 certificates only. A v1 leaf (what the hosted docs' openssl commands make:
/// `openssl x509 -req` without extensions), which the hosted service accepts, is
/// checked here instead: signed directly by one of the authorities and valid now.
#[derive(Debug)]
struct Authorities {
    webpki: Arc<dyn ClientCertVerifier>,
    authorities: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for Authorities {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match X509Certificate::from_der(end_entity) {
            Ok((_, leaf)) if leaf.version() == X509Version::V1 => self.verify_v1_leaf(&leaf, now),
            _ => self
                .webpki
                .verify_client_cert(end_entity, intermediates, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, &self.algorithms, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, &self.algorithms, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl Authorities {
    fn verify_v1_leaf(
        &self,
        leaf: &X509Certificate<'_>,
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let issued = self.authorities.iter().any(|ca| {
            X509Certificate::from_der(ca).is_ok_and(|(_, ca)| {
                ca.subject().as_raw() == leaf.issuer().as_raw()
                    && leaf.verify_signature(Some(ca.public_key())).is_ok()
            })
        });
        if !issued {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ));
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = leaf.validity();
        if now < validity.not_before.timestamp() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > validity.not_after.timestamp() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(ClientCertVerified::assertion())
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
        handshake_signature(message, cert, dss, &self.algorithms, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, &self.algorithms, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks the client's handshake signature with the key of its certificate. rustls'
/// helpers parse the certificate with WebPKI, which refuses X.509 v1; for such a
/// certificate the key is taken out here and checked as a raw public key.
fn handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let v1 = match X509Certificate::from_der(cert) {
        Ok((_, parsed)) if parsed.version() == X509Version::V1 => parsed,
        _ if tls13 => {
            return rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        }
        _ => return rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms),
    };
    let spki = v1.public_key();
    if tls13 {
        let der = SubjectPublicKeyInfoDer::from(spki.raw);
        return rustls::crypto::verify_tls13_signature_with_raw_key(message, &der, dss, algorithms);
    }
    let Some((_, candidates)) = algorithms.mapping.iter().find(|(s, _)| *s == dss.scheme) else {
        return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    };
    let key = &spki.subject_public_key.data;
    let verified = candidates
        .iter()
        .any(|alg| alg.verify_signature(key, message, dss.signature()).is_ok());
    if verified {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ))
    }
}
