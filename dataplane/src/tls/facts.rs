//! What a finished handshake tells policies (`conn.tls.*` but the SNI, which routing
//! reads before the handshake): taken from the session once, when it is established;
//! the certificates and the JA4 fingerprint are worked out only when a policy asks.

use std::cell::OnceCell;

use innergate_table::policy::expr::{CertOf, TlsVar};
use rustls::pki_types::CertificateDer;

use super::certificate::CertFacts;

/// The TLS facts of one connection.
#[derive(Debug)]
pub(crate) struct TlsFacts {
    version: &'static str,
    cipher_suite: &'static str,
    negotiated_alpn: String,
    session_resumed: bool,
    /// The records of the ClientHello, for the fingerprint.
    hello: Vec<u8>,
    ja4: OnceCell<String>,
    certificates: [Option<CertificateDer<'static>>; 2],
    parsed: [OnceCell<CertFacts>; 2],
}

impl TlsFacts {
    /// The facts of an established `session` whose ClientHello came in the records
    /// `hello` and whose server presented `server_certificate`.
    pub(crate) fn of(
        session: &rustls::ServerConnection,
        hello: Vec<u8>,
        server_certificate: Option<CertificateDer<'static>>,
    ) -> TlsFacts {
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "",
        };
        let cipher_suite = session
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map_or("", iana_name);
        let client_certificate = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.clone().into_owned());
        TlsFacts {
            version,
            cipher_suite,
            negotiated_alpn: session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            session_resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            hello,
            ja4: OnceCell::new(),
            certificates: [client_certificate, server_certificate],
            parsed: [OnceCell::new(), OnceCell::new()],
        }
    }

    fn certificate(&self, of: CertOf) -> Option<&CertFacts> {
        let i = match of {
            CertOf::Client => 0,
            CertOf::Server => 1,
        };
        let der = self.certificates[i].as_ref()?;
        Some(self.parsed[i].get_or_init(|| CertFacts::of(der)))
    }

    pub(crate) fn string(&self, var: TlsVar) -> &str {
        match var {
            TlsVar::Version => self.version,
            TlsVar::CipherSuite => self.cipher_suite,
            TlsVar::NegotiatedAlpn => &self.negotiated_alpn,
            TlsVar::Ja4Fingerprint => self.ja4.get_or_init(|| {
                super::sni::client_hello_message(&self.hello)
                    .ok()
                    .flatten()
                    .map_or_else(String::new, |body| super::ja4::fingerprint(&body))
            }),
            TlsVar::Cert(of, field) => self.certificate(of).map_or("", |c| c.string(field)),
            TlsVar::SessionResumed => "",
        }
    }

    pub(crate) fn boolean(&self, var: TlsVar) -> bool {
        var == TlsVar::SessionResumed && self.session_resumed
    }

    pub(crate) fn list(&self, var: TlsVar) -> &[String] {
        match var {
            TlsVar::Cert(of, field) => self.certificate(of).map_or(&[], |c| c.list(field)),
            _ => &[],
        }
    }

    pub(crate) fn int(&self, var: TlsVar) -> i64 {
        match var {
            TlsVar::Cert(of, field) => self.certificate(of).map_or(0, |c| c.time_ns(field)),
            _ => 0,
        }
    }
}

/// The IANA name of a suite: rustls writes TLS 1.3's as `TLS13_…`.
fn iana_name(rustls_name: &'static str) -> &'static str {
    match rustls_name {
        "TLS13_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        other => other,
    }
}
