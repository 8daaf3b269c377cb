//! A certificate authority of the test's own: its certificate to trust, and leaves
//! it signs (`basicConstraints=CA:FALSE`, which rustls requires of a server's), in
//! PEM, written where a process under test reads them.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA made for one test.
#[derive(Debug)]
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// The CA's certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for `names` (DNS names or IP addresses): (certificate, key), PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        self.issue_to(None, names)
    }

    /// A leaf for `names` whose subject is `CN=common_name` where one is given
    /// (rcgen's own name otherwise): (certificate, key), PEM.
    pub fn issue_to(&self, common_name: Option<&str>, names: &[&str]) -> (String, String) {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if let Some(name) = common_name {
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
        }
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `DIR/ca.pem`.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), &self.pem).unwrap();
    }

    /// Issues a leaf for `names` and writes it as `DIR/STEM.crt` and `DIR/STEM.key`.
    pub fn write_leaf(&self, dir: &Path, stem: &str, names: &[&str]) {
        let (cert, key) = self.issue(names);
        std::fs::write(dir.join(format!("{stem}.crt")), cert).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key).unwrap();
    }
}
