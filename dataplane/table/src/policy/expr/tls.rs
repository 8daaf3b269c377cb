//! The `conn.tls.*` variables: the handshake's outcome and the two certificates
//! (`conn.tls.client.*`, the client's under mutual TLS; `conn.tls.server.*`, the one
//! the data plane presented), named as the hosted service's connection page does.
//! Without TLS, or without the certificate, each reads empty, `false`, `[]` or the
//! Unix epoch.

use super::Type;

/// A `conn.tls.*` variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVar {
    /// `conn.tls.version`: `1.2` or `1.3`.
    Version,
    /// `conn.tls.cipher_suite`: its IANA name, such as `TLS_AES_128_GCM_SHA256`.
    CipherSuite,
    /// `conn.tls.negotiated_alpn`: "" when none was agreed.
    NegotiatedAlpn,
    /// `conn.tls.session_resumed`.
    SessionResumed,
    /// `conn.tls.ja4_fingerprint`: the JA4 fingerprint of the ClientHello.
    Ja4Fingerprint,
    /// A field of one of the certificates.
    Cert(CertOf, CertVar),
}

/// Whose certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertOf {
    /// The client's, shown under mutual TLS.
    Client,
    /// The data plane's, as it presented it.
    Server,
}

/// A field of a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertVar {
    /// `pem`: the whole certificate, PEM-encoded (the client's only, as documented).
    Pem,
    /// `subject`: the distinguished name, RFC 2253 style.
    Subject,
    /// `issuer`: the issuer's distinguished name, RFC 2253 style.
    Issuer,
    /// `subject.<field>`.
    SubjectField(NameField),
    /// `issuer.<field>`.
    IssuerField(NameField),
    /// `san`: every subject alternative name, comma-separated.
    San,
    /// `san.dns_names`.
    SanDnsNames,
    /// `san.email_addresses`.
    SanEmailAddresses,
    /// `san.ip_addresses`.
    SanIpAddresses,
    /// `san.uris`.
    SanUris,
    /// `serial_number`: hexadecimal, as the hosted service prints it.
    SerialNumber,
    /// `signature_algorithm`, such as `SHA256-RSA`.
    SignatureAlgorithm,
    /// `validity.not_before`.
    NotBefore,
    /// `validity.not_after`.
    NotAfter,
}

/// An attribute of a distinguished name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameField {
    /// `common_name`: a string (the first, where there are several).
    CommonName,
    /// `country`.
    Country,
    /// `locality`.
    Locality,
    /// `organization`.
    Organization,
    /// `organizational_unit`.
    OrganizationalUnit,
    /// `postal_code`.
    PostalCode,
    /// `province`.
    Province,
    /// `street_address`.
    StreetAddress,
}

impl NameField {
    const ALL: [(&'static str, NameField); 8] = [
        ("common_name", NameField::CommonName),
        ("country", NameField::Country),
        ("locality", NameField::Locality),
        ("organization", NameField::Organization),
        ("organizational_unit", NameField::OrganizationalUnit),
        ("postal_code", NameField::PostalCode),
        ("province", NameField::Province),
        ("street_address", NameField::StreetAddress),
    ];
}

impl TlsVar {
    /// The variable `path` names and its type, for a path under `conn.tls.`.
    pub(super) fn named(path: &str) -> Option<(TlsVar, Type)> {
        let rest = path.strip_prefix("conn.tls.")?;
        let whole = match rest {
            "version" => Some((TlsVar::Version, Type::String)),
            "cipher_suite" => Some((TlsVar::CipherSuite, Type::String)),
            "negotiated_alpn" => Some((TlsVar::NegotiatedAlpn, Type::String)),
            "session_resumed" => Some((TlsVar::SessionResumed, Type::Bool)),
            "ja4_fingerprint" => Some((TlsVar::Ja4Fingerprint, Type::String)),
            _ => None,
        };
        if whole.is_some() {
            return whole;
        }
        let (of, field) = if let Some(field) = rest.strip_prefix("client.") {
            (CertOf::Client, field)
        } else {
            (CertOf::Server, rest.strip_prefix("server.")?)
        };
        let (var, ty) = CertVar::named(field)?;
        // The docs give the PEM of the client's certificate only.
        if of == CertOf::Server && var == CertVar::Pem {
            return None;
        }
        Some((TlsVar::Cert(of, var), ty))
    }

    /// How evaluation reads it from the facts.
    pub(super) fn ty(self) -> Type {
        match self {
            TlsVar::SessionResumed => Type::Bool,
            TlsVar::Cert(_, var) => var.ty(),
            _ => Type::String,
        }
    }
}

impl CertVar {
    fn named(field: &str) -> Option<(CertVar, Type)> {
        let var = match field {
            "pem" => CertVar::Pem,
            "subject" => CertVar::Subject,
            "issuer" => CertVar::Issuer,
            "san" => CertVar::San,
            "san.dns_names" => CertVar::SanDnsNames,
            "san.email_addresses" => CertVar::SanEmailAddresses,
            "san.ip_addresses" => CertVar::SanIpAddresses,
            "san.uris" => CertVar::SanUris,
            "serial_number" => CertVar::SerialNumber,
            "signature_algorithm" => CertVar::SignatureAlgorithm,
            "validity.not_before" => CertVar::NotBefore,
            "validity.not_after" => CertVar::NotAfter,
            _ => {
                let (side, attribute) = field.split_once('.')?;
                let (_, name) = NameField::ALL.iter().find(|(n, _)| *n == attribute)?;
                match side {
                    "subject" => CertVar::SubjectField(*name),
                    "issuer" => CertVar::IssuerField(*name),
                    _ => return None,
                }
            }
        };
        Some((var, var.ty()))
    }

    fn ty(self) -> Type {
        match self {
            CertVar::SubjectField(NameField::CommonName)
            | CertVar::IssuerField(NameField::CommonName)
            | CertVar::Pem
            | CertVar::Subject
            | CertVar::Issuer
            | CertVar::San
            | CertVar::SerialNumber
            | CertVar::SignatureAlgorithm => Type::String,
            CertVar::NotBefore | CertVar::NotAfter => Type::Timestamp,
            _ => Type::List,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_follow_the_connection_page() {
        for (path, var, ty) in [
            ("conn.tls.version", TlsVar::Version, Type::String),
            (
                "conn.tls.session_resumed",
                TlsVar::SessionResumed,
                Type::Bool,
            ),
            (
                "conn.tls.client.subject.common_name",
                TlsVar::Cert(CertOf::Client, CertVar::SubjectField(NameField::CommonName)),
                Type::String,
            ),
            (
                "conn.tls.server.issuer.organization",
                TlsVar::Cert(
                    CertOf::Server,
                    CertVar::IssuerField(NameField::Organization),
                ),
                Type::List,
            ),
            (
                "conn.tls.client.validity.not_after",
                TlsVar::Cert(CertOf::Client, CertVar::NotAfter),
                Type::Timestamp,
            ),
            (
                "conn.tls.client.san.dns_names",
                TlsVar::Cert(CertOf::Client, CertVar::SanDnsNames),
                Type::List,
            ),
        ] {
            assert_eq!(TlsVar::named(path), Some((var, ty)), "{path}");
            assert_eq!(var.ty(), ty, "{path}");
        }
        for unknown in [
            "conn.tls.server.pem",
            "conn.tls.client.subject.nickname",
            "conn.tls.client",
            "conn.tls.peer.subject",
            "conn.tls.versions",
        ] {
            assert_eq!(TlsVar::named(unknown), None, "{unknown}");
        }
    }
}
