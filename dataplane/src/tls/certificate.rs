//! What a certificate says, for the `conn.tls.client.*` and `conn.tls.server.*`
//! variables: parsed once per connection, when a policy first asks, and written the
//! way the hosted service writes it (names `CN=www.example.com,O=Example,C=US`, most
//! specific first; SANs `DNS:a, IP Address:192.0.2.1`; the serial in hex; Go's
//! names of signature algorithms).

use innergate_table::policy::expr::{CertVar, NameField};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// The facts of one certificate.
#[derive(Debug, Default)]
pub(crate) struct CertFacts {
    pem: String,
    subject: String,
    issuer: String,
    subject_fields: NameFacts,
    issuer_fields: NameFacts,
    san: String,
    dns_names: Vec<String>,
    email_addresses: Vec<String>,
    ip_addresses: Vec<String>,
    uris: Vec<String>,
    serial_number: String,
    signature_algorithm: String,
    not_before_ns: i64,
    not_after_ns: i64,
}

/// The attributes of a distinguished name, by [`NameField`], each with its values.
#[derive(Debug, Default)]
struct NameFacts([Vec<String>; 8]);

/// The attribute OIDs of [`NameField`], in its order, with their RFC 2253 keys.
const ATTRIBUTES: [(NameField, &str, &str); 8] = [
    (NameField::CommonName, "2.5.4.3", "CN"),
    (NameField::Country, "2.5.4.6", "C"),
    (NameField::Locality, "2.5.4.7", "L"),
    (NameField::Organization, "2.5.4.10", "O"),
    (NameField::OrganizationalUnit, "2.5.4.11", "OU"),
    (NameField::PostalCode, "2.5.4.17", "POSTALCODE"),
    (NameField::Province, "2.5.4.8", "ST"),
    (NameField::StreetAddress, "2.5.4.9", "STREET"),
];

impl CertFacts {
    /// The facts of `der`; empty where it does not parse (the handshake accepted it,
    /// so that is a certificate only a `require-any` strategy lets through).
    pub(crate) fn of(der: &CertificateDer<'_>) -> CertFacts {
        let mut facts = CertFacts {
            pem: pem(der),
            ..CertFacts::default()
        };
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return facts;
        };
        facts.subject = rfc2253(cert.subject());
        facts.issuer = rfc2253(cert.issuer());
        facts.subject_fields = NameFacts::of(cert.subject());
        facts.issuer_fields = NameFacts::of(cert.issuer());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            let mut shown = Vec::new();
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => {
                        shown.push(format!("DNS:{n}"));
                        facts.dns_names.push(n.to_string());
                    }
                    GeneralName::RFC822Name(n) => {
                        shown.push(format!("email:{n}"));
                        facts.email_addresses.push(n.to_string());
                    }
                    GeneralName::URI(n) => {
                        shown.push(format!("URI:{n}"));
                        facts.uris.push(n.to_string());
                    }
                    GeneralName::IPAddress(bytes) => {
                        let ip = ip_text(bytes);
                        shown.push(format!("IP Address:{ip}"));
                        facts.ip_addresses.push(ip);
                    }
                    _ => {}
                }
            }
            facts.san = shown.join(", ");
        }
        facts.serial_number = serial_hex(cert.raw_serial());
        facts.signature_algorithm =
            signature_algorithm(&cert.signature_algorithm.algorithm.to_id_string());
        let validity = cert.validity();
        facts.not_before_ns = validity
            .not_before
            .timestamp()
            .saturating_mul(1_000_000_000);
        facts.not_after_ns = validity.not_after.timestamp().saturating_mul(1_000_000_000);
        facts
    }

    /// A string field ("" for the others).
    pub(crate) fn string(&self, var: CertVar) -> &str {
        match var {
            CertVar::Pem => &self.pem,
            CertVar::Subject => &self.subject,
            CertVar::Issuer => &self.issuer,
            CertVar::San => &self.san,
            CertVar::SerialNumber => &self.serial_number,
            CertVar::SignatureAlgorithm => &self.signature_algorithm,
            CertVar::SubjectField(NameField::CommonName) => self.subject_fields.first_cn(),
            CertVar::IssuerField(NameField::CommonName) => self.issuer_fields.first_cn(),
            _ => "",
        }
    }

    /// A list field (`[]` for the others).
    pub(crate) fn list(&self, var: CertVar) -> &[String] {
        match var {
            CertVar::SubjectField(field) => self.subject_fields.get(field),
            CertVar::IssuerField(field) => self.issuer_fields.get(field),
            CertVar::SanDnsNames => &self.dns_names,
            CertVar::SanEmailAddresses => &self.email_addresses,
            CertVar::SanIpAddresses => &self.ip_addresses,
            CertVar::SanUris => &self.uris,
            _ => &[],
        }
    }

    /// A timestamp field, in nanoseconds since the Unix epoch (0 for the others).
    pub(crate) fn time_ns(&self, var: CertVar) -> i64 {
        match var {
            CertVar::NotBefore => self.not_before_ns,
            CertVar::NotAfter => self.not_after_ns,
            _ => 0,
        }
    }
}

impl NameFacts {
    fn of(name: &X509Name<'_>) -> NameFacts {
        let mut facts = NameFacts::default();
        for attribute in name.iter_attributes() {
            let oid = attribute.attr_type().to_id_string();
            if let Some(i) = ATTRIBUTES.iter().position(|(_, o, _)| *o == oid) {
                if let Ok(value) = attribute.as_str() {
                    facts.0[i].push(value.to_string());
                }
            }
        }
        facts
    }

    fn get(&self, field: NameField) -> &[String] {
        let i = ATTRIBUTES
            .iter()
            .position(|(f, _, _)| *f == field)
            .expect("every field has an attribute");
        &self.0[i]
    }

    fn first_cn(&self) -> &str {
        self.get(NameField::CommonName)
            .first()
            .map_or("", String::as_str)
    }
}

/// A distinguished name as RFC 2253 writes it: the last RDN first, attributes
/// `KEY=value` joined by `,` (`+` within one RDN), special characters escaped.
fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let key = ATTRIBUTES
                        .iter()
                        .find(|(_, o, _)| *o == oid)
                        .map_or(oid.as_str(), |(_, _, key)| key);
                    let value = attribute.as_str().unwrap_or("");
                    format!("{key}={}", escape_dn_value(value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes")).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")).to_string(),
        _ => String::new(),
    }
}

/// The serial as lowercase hex without leading zeros.
fn serial_hex(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Go's name of a signature algorithm (what the hosted service shows); the OID for
/// one it has no name for.
fn signature_algorithm(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.4" => "MD5-RSA",
        "1.2.840.113549.1.1.5" => "SHA1-RSA",
        "1.2.840.113549.1.1.11" => "SHA256-RSA",
        "1.2.840.113549.1.1.12" => "SHA384-RSA",
        "1.2.840.113549.1.1.13" => "SHA512-RSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.4.1" => "ECDSA-SHA1",
        "1.2.840.10045.4.3.2" => "ECDSA-SHA256",
        "1.2.840.10045.4.3.3" => "ECDSA-SHA384",
        "1.2.840.10045.4.3.4" => "ECDSA-SHA512",
        "1.3.101.112" => "Ed25519",
        other => other,
    }
    .to_string()
}

/// The certificate PEM-encoded, without a final newline.
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate() -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec![
            "www.example.com".to_string(),
            "example.com".to_string(),
        ])
        .unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("192.168.1.1".parse().unwrap()));
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "ops@example.com".try_into().unwrap(),
        ));
        params.subject_alt_names.push(rcgen::SanType::URI(
            "https://example.com/example".try_into().unwrap(),
        ));
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Example, Corp");
        dn.push(rcgen::DnType::CommonName, "www.example.com");
        params.distinguished_name = dn;
        params.serial_number = Some(vec![0x00, 0xb5, 0x30, 0x17].into());
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2023, 1, 1);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn reads_the_fields_the_hosted_service_documents() {
        let facts = CertFacts::of(&certificate());
        assert_eq!(
            facts.string(CertVar::Subject),
            "CN=www.example.com,O=Example\\, Corp,C=US"
        );
        assert_eq!(
            facts.string(CertVar::Issuer),
            facts.string(CertVar::Subject)
        );
        assert_eq!(
            facts.string(CertVar::SubjectField(NameField::CommonName)),
            "www.example.com"
        );
        assert_eq!(
            facts.list(CertVar::SubjectField(NameField::Organization)),
            ["Example, Corp"]
        );
        assert_eq!(facts.list(CertVar::IssuerField(NameField::Country)), ["US"]);
        assert!(facts
            .list(CertVar::SubjectField(NameField::Locality))
            .is_empty());
        assert_eq!(
            facts.string(CertVar::San),
            "DNS:www.example.com, DNS:example.com, IP Address:192.168.1.1, \
             email:ops@example.com, URI:https://example.com/example"
        );
        assert_eq!(
            facts.list(CertVar::SanDnsNames),
            ["www.example.com", "example.com"]
        );
        assert_eq!(facts.list(CertVar::SanIpAddresses), ["192.168.1.1"]);
        assert_eq!(facts.list(CertVar::SanEmailAddresses), ["ops@example.com"]);
        assert_eq!(
            facts.list(CertVar::SanUris),
            ["https://example.com/example"]
        );
        assert_eq!(facts.string(CertVar::SerialNumber), "b53017");
        assert_eq!(facts.string(CertVar::SignatureAlgorithm), "ECDSA-SHA256");
        assert_eq!(facts.time_ns(CertVar::NotBefore), 1_577_836_800_000_000_000);
        assert_eq!(facts.time_ns(CertVar::NotAfter), 1_672_531_200_000_000_000);
        let pem = facts.string(CertVar::Pem);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
        assert!(pem.ends_with("\n-----END CERTIFICATE-----"), "{pem}");
    }

    #[test]
    fn what_does_not_parse_reads_empty() {
        let facts = CertFacts::of(&CertificateDer::from(vec![1, 2, 3]));
        assert_eq!(facts.string(CertVar::Subject), "");
        assert!(facts.list(CertVar::SanDnsNames).is_empty());
        assert_eq!(facts.time_ns(CertVar::NotAfter), 0);
    }
}
