//! `terminate-tls`: end TLS at the data plane on a tls endpoint, then pass the plain
//! bytes on as tcp. Uses its own certificate when the config has one, else the data
//! plane's; with `mutual_tls_certificate_authorities` or a verification strategy, asks
//! the client for a certificate (mutual TLS). The phase goes on (a forward-internal
//! may follow).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::Phase;

/// Config of `terminate-tls` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminateTlsConfig {
    /// The certificate chain, PEM.
    #[serde(default)]
    pub server_certificate: Option<String>,
    /// Its private key, PEM.
    #[serde(default)]
    pub server_private_key: Option<String>,
    /// `1.2` (default) or `1.3`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// `1.2` or `1.3` (default).
    #[serde(default)]
    pub max_version: Option<String>,
    /// PEM certificates of the authorities whose client certificates are trusted (a
    /// list; one PEM string is taken too, as one of the docs' examples writes it).
    #[serde(default, deserialize_with = "one_or_many")]
    pub mutual_tls_certificate_authorities: Vec<String>,
    /// How client certificates are asked for and checked.
    #[serde(default)]
    pub mutual_tls_verification_strategy: Option<ClientAuthMode>,
}

/// The hosted service's mutual TLS strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuthMode {
    /// A certificate is required and must chain to one of the authorities (the
    /// default when authorities are given).
    RequireAndVerify,
    /// A certificate is required (and the client must hold its key), whoever issued it.
    RequireAny,
    /// A certificate is asked for but optional, and not checked against authorities.
    Request,
}

/// Client authentication of a terminate-tls: the mode and the trusted authorities'
/// certificates (DER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    /// How certificates are asked for and checked.
    pub mode: ClientAuthMode,
    /// The trusted authorities (for `require-and-verify`).
    pub authorities: Vec<CertificateDer<'static>>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Reads the authorities: each entry is PEM holding one or more certificates.
fn authorities(entries: &[String]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("mutual_tls_certificate_authorities[{i}]");
        if !entry.contains("-----BEGIN") {
            return Err(format!(
                "{at}: `{}` is not PEM (certificate authorities stored by the hosted \
                 service are named by id there; give the authority's PEM certificate)",
                entry.chars().take(40).collect::<String>()
            ));
        }
        let certs = CertificateDer::pem_slice_iter(entry.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{at}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{at}: holds no PEM certificate"));
        }
        out.extend(certs);
    }
    Ok(out)
}

/// A TLS version a terminate-tls may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

fn version(text: Option<&str>, default: TlsVersion) -> Result<TlsVersion, String> {
    match text {
        None => Ok(default),
        Some("1.2") => Ok(TlsVersion::V1_2),
        Some("1.3") => Ok(TlsVersion::V1_3),
        Some(other) => Err(format!(
            "TLS version `{other}` is not offered: use 1.2 or 1.3"
        )),
    }
}

/// `terminate-tls`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminateTls {
    /// Certificate chain and key PEM, when the action brings its own.
    pub certificate: Option<(String, String)>,
    /// Oldest version allowed.
    pub min_version: TlsVersion,
    /// Newest version allowed.
    pub max_version: TlsVersion,
    /// Mutual TLS, when the config asks for it.
    pub client_auth: Option<ClientAuth>,
}

impl TerminateTls {
    /// Checks versions and that the PEM parses.
    pub fn new(config: TerminateTlsConfig) -> Result<Self, String> {
        let min_version = version(config.min_version.as_deref(), TlsVersion::V1_2)?;
        let max_version = version(config.max_version.as_deref(), TlsVersion::V1_3)?;
        if min_version > max_version {
            return Err("min_version is newer than max_version".into());
        }
        let certificate = match (config.server_certificate, config.server_private_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("server_certificate: {e}"))?;
                if chain.is_empty() {
                    return Err("server_certificate holds no PEM certificate".into());
                }
                PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| format!("server_private_key: {e}"))?;
                Some((cert, key))
            }
            _ => {
                return Err(
                    "give both server_certificate and server_private_key, or neither".into(),
                )
            }
        };
        let authorities = authorities(&config.mutual_tls_certificate_authorities)?;
        let client_auth = match (
            config.mutual_tls_verification_strategy,
            authorities.is_empty(),
        ) {
            (None, true) => None,
            (Some(ClientAuthMode::RequireAndVerify), true) => {
                return Err("mutual_tls_verification_strategy require-and-verify needs \
                            mutual_tls_certificate_authorities"
                    .into())
            }
            (mode, _) => Some(ClientAuth {
                mode: mode.unwrap_or(ClientAuthMode::RequireAndVerify),
                authorities,
            }),
        };
        Ok(TerminateTls {
            certificate,
            min_version,
            max_version,
            client_auth,
        })
    }
}

impl PolicyAction for TerminateTls {
    type Config = TerminateTlsConfig;

    fn compile(config: TerminateTlsConfig, _: Phase) -> Result<Self, String> {
        TerminateTls::new(config)
    }

    /// TLS ends with this action's settings, which the data plane compiled into a
    /// server config kept under this action's id; the phase goes on.
    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        x.terminate_tls();
        Verdict::Continue
    }
}
