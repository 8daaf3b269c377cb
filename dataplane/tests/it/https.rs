//! https endpoints: TLS termination with certificates picked by SNI, then the HTTP path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::support::*;

const PORT: u16 = 8443;

/// A test CA and the certificates it signed, written as the data plane reads them.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    /// File stem → certificate.
    issued: Vec<(String, CertificateDer<'static>)>,
}

impl Pki {
    fn new(names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "innergate test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut issued = Vec::new();
        for name in names {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            // Not Path::with_extension: it would cut `.com` off a host name.
            let base = if *name == "default.test" {
                dir.path().join("default")
            } else {
                dir.path().join("certs").join(name)
            };
            let file = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
            std::fs::write(file("crt"), cert.pem()).unwrap();
            std::fs::write(file("key"), key.serialize_pem()).unwrap();
            issued.push((name.to_string(), cert.der().clone()));
        }
        Pki { dir, ca, issued }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A rustls client trusting only this test CA.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        tls_client_config(std::slice::from_ref(&self.ca))
    }

    fn cert(&self, name: &str) -> &CertificateDer<'static> {
        &self.issued.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn start(&self, extra: &[&str]) -> DataPlane {
        let cert = self.path("default.crt");
        let key = self.path("default.key");
        let dir = self.path("certs");
        let mut args = vec![
            "--port-map",
            "8443=0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-cert-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        DataPlane::start_with(&args)
    }

    /// A GET over TLS with `sni`; returns the certificate served, status and body.
    fn get(
        &self,
        addr: SocketAddr,
        sni: &str,
        host: &str,
    ) -> (CertificateDer<'static>, u16, String) {
        let (response, served) = tls_get(&self.client_config(), addr, sni, host);
        (served, response.status, response.text())
    }
}

#[test]
fn https_picks_certificates_by_sni_and_forwards_internally() {
    let pki = Pki::new(&["default.test", "app.example.com", "*.wild.example.com"]);
    let backend = Backend::text("from upstream");
    let mut dp = pki.start(&[]);
    let answer_sni = "on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: '${req.url.scheme} ${conn.tls.sni}'}\n";
    dp.push(vec![
        cloud(
            "ep_app",
            "acme",
            "https://app.example.com:8443",
            &forward_to("https://svc.internal"),
        ),
        agent("ep_svc", "acme", "https://svc.internal", backend.addr),
        cloud(
            "ep_wild",
            "acme",
            "https://*.wild.example.com:8443",
            answer_sni,
        ),
        cloud(
            "ep_other",
            "acme",
            "https://other.example.com:8443",
            answer_sni,
        ),
    ]);
    let addr = dp.listener(PORT);
    let (cert, status, body) = pki.get(addr, "app.example.com", "app.example.com");
    assert_eq!((status, body.as_str()), (200, "from upstream"));
    assert_eq!(&cert, pki.cert("app.example.com"));
    let seen = &backend.requests()[0];
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("host"), Some("app.example.com"));

    let (cert, _, body) = pki.get(addr, "a.wild.example.com", "a.wild.example.com");
    assert_eq!(&cert, pki.cert("*.wild.example.com"));
    assert_eq!(body, "https a.wild.example.com");

    // No certificate for this name: the default one is served (and the test client,
    // which checks names, would refuse it: so ask with the default's name as SNI).
    let (cert, _, body) = pki.get(addr, "default.test", "other.example.com");
    assert_eq!(&cert, pki.cert("default.test"));
    assert_eq!(body, "https default.test");
}

/// A ClientHello offering only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1).
fn legacy_hello(version: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 4, 0x00, 0x2f, 0x00, 0xff]); // cipher suites
    body.extend_from_slice(&[1, 0]); // compression: null
                                     // signature_algorithms, so that the version is the only thing wrong.
    body.extend_from_slice(&[0, 10, 0x00, 0x0d, 0, 6, 0, 4, 0x04, 0x01, 0x08, 0x04]);
    let mut handshake = vec![1, 0, 0, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn tls_1_0_and_1_1_are_refused() {
    let pki = Pki::new(&["default.test"]);
    let mut dp = pki.start(&[]);
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "https://app.example.com:8443",
        &answer("x"),
    )]);
    for version in [0x0301u16, 0x0302] {
        let mut s = TcpStream::connect(dp.listener(PORT)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(&legacy_hello(version)).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(!reply.is_empty(), "an alert is expected for {version:#x}");
        assert_eq!(
            reply[0], 0x15,
            "a TLS alert, not a ServerHello, for {version:#x}: {reply:?}"
        );
        assert_eq!(
            reply.get(6),
            Some(&70),
            "protocol_version alert for {version:#x}: {reply:?}"
        );
    }
}

#[test]
fn a_silent_tls_client_times_out_and_frees_its_slot() {
    let pki = Pki::new(&["default.test"]);
    let mut dp = pki.start(&[
        "--tls-handshake-timeout",
        "500ms",
        "--max-connections-per-worker",
        "1",
    ]);
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "https://app.example.com:8443",
        &answer("x"),
    )]);
    let mut silent = TcpStream::connect(dp.listener(PORT)).unwrap();
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = silent.read_to_end(&mut buf);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "closed after {:?}",
        start.elapsed()
    );
    // Its slot is free again: with one connection per worker, both workers still serve.
    for _ in 0..4 {
        let (_, status, body) = pki.get(dp.listener(PORT), "default.test", "app.example.com");
        assert_eq!((status, body.as_str()), (200, "x"));
    }
}

#[test]
fn https_without_certificates_is_refused_with_the_reason() {
    let mut dp = DataPlane::start_with(&["--port-map", "8443=0"]);
    let refused = dp.try_push(vec![cloud(
        "ep_app",
        "acme",
        "https://app.example.com:8443",
        &answer("x"),
    )]);
    match refused {
        Err(innergate_table::link::LinkError::Refused { reason, .. }) => {
            assert!(reason.contains("--tls-cert"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// A TLS echo server with the certificate `name` from `pki`: echoes until EOF.
fn tls_echo(pki: &Pki, name: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let cert = std::fs::read(pki.path(&format!("certs/{name}.crt"))).unwrap();
    let key = std::fs::read(pki.path(&format!("certs/{name}.key"))).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(&cert).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf) {
                    if n == 0 || tls.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A socket that writes its first `slow` bytes one at a time, so a ClientHello
/// arrives in many pieces.
struct Trickle {
    inner: TcpStream,
    slow: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.slow == 0 || buf.is_empty() {
            return self.inner.write(buf);
        }
        self.slow -= 1;
        self.inner.write_all(&buf[..1])?;
        std::thread::sleep(Duration::from_micros(300));
        Ok(1)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Echoes `message` over TLS to `addr` with `sni`; returns the certificate seen.
fn tls_echo_through(
    pki: &Pki,
    addr: SocketAddr,
    sni: &str,
    message: &[u8],
    slow: usize,
) -> CertificateDer<'static> {
    let conn = rustls::ClientConnection::new(
        pki.client_config(),
        ServerName::try_from(sni.to_string()).unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, Trickle { inner: tcp, slow });
    tls.write_all(message).unwrap();
    let mut back = vec![0u8; message.len()];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(back, message);
    tls.conn.peer_certificates().unwrap()[0].clone()
}

#[test]
fn tls_passthrough_routes_by_sni_even_when_the_hello_trickles_in() {
    let pki = Pki::new(&["default.test", "a.example.com", "b.example.com"]);
    let (a, b) = (
        tls_echo(&pki, "a.example.com"),
        tls_echo(&pki, "b.example.com"),
    );
    let mut dp = pki.start(&[]);
    dp.push(vec![
        agent("ep_a", "acme", "tls://a.example.com:8443", format!("tcp://{a}")),
        cloud(
            "ep_b",
            "acme",
            "tls://b.example.com:8443",
            "on_tcp_connect:\n  - actions: [{type: forward-internal, config: {url: 'tls://b.internal'}}]\n",
        ),
        agent("ep_b_internal", "acme", "tls://b.internal", format!("tcp://{b}")),
    ]);
    let addr = dp.listener(PORT);
    // The upstreams' own certificates arrive: TLS went through untouched.
    assert_eq!(
        &tls_echo_through(&pki, addr, "a.example.com", b"ping a", 600),
        pki.cert("a.example.com")
    );
    assert_eq!(
        &tls_echo_through(&pki, addr, "b.example.com", b"ping b", 0),
        pki.cert("b.example.com")
    );
    // An unknown name has nowhere to go: the connection closes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&legacy_hello(0x0303)).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn tls_passthrough_also_splices() {
    let pki = Pki::new(&["default.test", "a.example.com"]);
    let a = tls_echo(&pki, "a.example.com");
    let mut dp = pki.start(&["--tcp-forwarding", "splice"]);
    dp.push(vec![agent(
        "ep_a",
        "acme",
        "tls://a.example.com:8443",
        format!("tcp://{a}"),
    )]);
    let served = tls_echo_through(&pki, dp.listener(PORT), "a.example.com", b"spliced tls", 0);
    assert_eq!(&served, pki.cert("a.example.com"));
}

#[test]
fn terminate_tls_ends_tls_here_and_passes_plain_bytes() {
    let pki = Pki::new(&["default.test", "t.example.com", "own.example.com"]);
    let plain = crate::tcp::echo_server("plain");
    let own_cert = std::fs::read_to_string(pki.path("certs/own.example.com.crt")).unwrap();
    let own_key = std::fs::read_to_string(pki.path("certs/own.example.com.key")).unwrap();
    let own_policy = serde_json::json!({
        "on_tcp_connect": [{"actions": [{"type": "terminate-tls", "config": {
            "server_certificate": own_cert, "server_private_key": own_key, "min_version": "1.3"}}]}]
    })
    .to_string();
    let mut dp = pki.start(&[]);
    dp.push(vec![
        with_policy(
            agent(
                "ep_t",
                "acme",
                "tls://t.example.com:8443",
                format!("tcp://{plain}"),
            ),
            "on_tcp_connect:\n  - actions: [{type: terminate-tls}]\n",
        ),
        with_policy(
            agent(
                "ep_own",
                "acme",
                "tls://own.example.com:8443",
                format!("tcp://{plain}"),
            ),
            &own_policy,
        ),
    ]);
    let addr = dp.listener(PORT);
    // The data plane's certificate for the name, then plain bytes to the echo server.
    assert_eq!(
        &tls_echo_through(&pki, addr, "t.example.com", b"hello plain", 0),
        pki.cert("t.example.com")
    );
    assert_eq!(
        &tls_echo_through(&pki, addr, "own.example.com", b"hello own", 0),
        pki.cert("own.example.com")
    );
}

/// An HTTPS server answering every request with `secure`, certificate `name`.
fn https_upstream(pki: &Pki, name: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let cert = std::fs::read(pki.path(&format!("certs/{name}.crt"))).unwrap();
    let key = std::fs::read(pki.path(&format!("certs/{name}.key"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(&cert).unwrap()],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).unwrap(),
            )
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecure";
                        if tls.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn https_upstreams_are_verified_unless_told_otherwise() {
    let pki = Pki::new(&["default.test", "127.0.0.1"]);
    let upstream = https_upstream(&pki, "127.0.0.1");
    let endpoints = || {
        vec![agent(
            "ep_app",
            "acme",
            "http://app.example.com",
            format!("https://{upstream}"),
        )]
    };
    // The system's roots do not know the test CA: refused.
    let mut dp = DataPlane::start();
    dp.push(endpoints());
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!((res.status, res.error_code()), (502, Some("ERR_IG_3009")));
    // Trusting the test CA: verified and served, with keep-alive reuse.
    let ca = pki.path("ca.pem");
    std::fs::write(&ca, pem_of(&pki.ca)).unwrap();
    let mut dp = DataPlane::start_with(&["--upstream-ca", ca.to_str().unwrap()]);
    dp.push(endpoints());
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..3 {
        assert_eq!(conn.get("app.example.com", "/").text(), "secure");
    }
    // Development: no verification when asked for explicitly.
    let mut dp = DataPlane::start_with(&["--upstream-tls-insecure"]);
    dp.push(endpoints());
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "secure");
}

#[test]
fn tcp_endpoints_can_reach_tls_upstreams() {
    let pki = Pki::new(&["default.test", "127.0.0.1"]);
    let upstream = tls_echo(&pki, "127.0.0.1");
    let ca = pki.path("ca.pem");
    std::fs::write(&ca, pem_of(&pki.ca)).unwrap();
    let mut dp = DataPlane::start_with(&[
        "--port-map",
        "15432=0",
        "--upstream-ca",
        ca.to_str().unwrap(),
    ]);
    dp.push(vec![agent(
        "ep_db",
        "acme",
        "tcp://db.example.com:15432",
        format!("tls://{upstream}"),
    )]);
    let mut s = TcpStream::connect(dp.listener(15432)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"plain in, TLS out").unwrap();
    let mut back = [0u8; 17];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"plain in, TLS out");
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[test]
fn a_request_for_another_endpoint_than_the_sni_is_misdirected() {
    let pki = Pki::new(&["default.test", "app.example.com", "admin.example.com"]);
    let admin_backend = Backend::text("admin");
    let mut dp = pki.start(&[]);
    dp.push(vec![
        cloud(
            "ep_app",
            "acme",
            "https://app.example.com:8443",
            &answer("app"),
        ),
        with_policy(
            agent(
                "ep_admin",
                "acme",
                "https://admin.example.com:8443",
                admin_backend.addr,
            ),
            "on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config: {deny: [127.0.0.0/8]}\n",
        ),
    ]);
    let addr = dp.listener(PORT);
    // Connected for app (its certificate, its on_tcp_connect), asking for admin.
    let (response, cert) = tls_get(
        &pki.client_config(),
        addr,
        "app.example.com",
        "admin.example.com",
    );
    assert_eq!(&cert, pki.cert("app.example.com"));
    assert_eq!(response.status, 421, "{}", response.text());
    assert_eq!(response.error_code(), Some("ERR_IG_1005"));
    assert!(admin_backend.requests().is_empty());
    // The host of the SNI, in any case, is served.
    let (response, _) = tls_get(
        &pki.client_config(),
        addr,
        "app.example.com",
        "APP.example.com",
    );
    assert_eq!((response.status, response.text().as_str()), (200, "app"));
}

/// A client trusting the test CA that shows `identity` (certificate and key PEM).
fn client_with_certificate(pki: &Pki, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// Whether bytes round-trip through a terminating tls endpoint for this client.
fn echoes(config: Arc<rustls::ClientConfig>, addr: SocketAddr, sni: &str) -> bool {
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from(sni.to_string()).unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    if tls.write_all(b"ping").is_err() {
        return false;
    }
    let mut back = [0u8; 4];
    tls.read_exact(&mut back).is_ok() && &back == b"ping"
}

#[test]
fn terminate_tls_mutual_tls_in_the_three_documented_strategies() {
    let pki = Pki::new(&[
        "default.test",
        "v.example.com",
        "a.example.com",
        "r.example.com",
    ]);
    let plain = crate::tcp::echo_server("plain");
    let clients = TestCa::new("client CA");
    let strangers = TestCa::new("another CA");
    let trusted = clients.issue(&["client.example.com"]);
    let stranger = strangers.issue(&["stranger.example.com"]);
    // The docs' example: the CA list and require-and-verify, then the other two.
    let policy = |strategy: &str| {
        serde_json::json!({
            "on_tcp_connect": [{"actions": [{"type": "terminate-tls", "config": {
                "mutual_tls_certificate_authorities": [clients.pem()],
                "mutual_tls_verification_strategy": strategy}}]}]
        })
        .to_string()
    };
    let mut dp = pki.start(&[]);
    let endpoint = |id: &str, host: &str, strategy: &str| {
        with_policy(
            agent(
                id,
                "acme",
                &format!("tls://{host}:8443"),
                format!("tcp://{plain}"),
            ),
            &policy(strategy),
        )
    };
    dp.push(vec![
        endpoint("ep_v", "v.example.com", "require-and-verify"),
        endpoint("ep_a", "a.example.com", "require-any"),
        endpoint("ep_r", "r.example.com", "request"),
    ]);
    let addr = dp.listener(PORT);
    let none = client_with_certificate(&pki, None);
    let good = client_with_certificate(&pki, Some((&trusted.0, &trusted.1)));
    let other = client_with_certificate(&pki, Some((&stranger.0, &stranger.1)));
    // require-and-verify: only a certificate of the given authority.
    assert!(echoes(good.clone(), addr, "v.example.com"));
    assert!(!echoes(none.clone(), addr, "v.example.com"));
    assert!(!echoes(other.clone(), addr, "v.example.com"));
    // require-any: some certificate, whoever issued it.
    assert!(echoes(other.clone(), addr, "a.example.com"));
    assert!(!echoes(none.clone(), addr, "a.example.com"));
    // request: asked for, optional.
    assert!(echoes(none, addr, "r.example.com"));
    assert!(echoes(other, addr, "r.example.com"));
}

/// Sends a GET over TLS with `config`; the status, or `None` when the handshake or
/// the exchange failed.
fn status_over(config: &Arc<rustls::ClientConfig>, addr: SocketAddr, sni: &str) -> Option<u16> {
    let mut tls = tls_connect(config, addr, sni);
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    std::str::from_utf8(raw.get(9..12)?).ok()?.parse().ok()
}

#[test]
fn https_endpoints_take_terminate_tls_and_policies_read_the_handshake() {
    let pki = Pki::new(&[
        "default.test",
        "m.example.com",
        "p.example.com",
        "v.example.com",
    ]);
    let clients = TestCa::new("client CA");
    let (cert, key) = clients.issue_to(Some("ExampleClient"), &["client.example.com"]);
    // What a request reads of its connection's TLS, one field per `|`.
    let facts = "${conn.tls.version}|${conn.tls.cipher_suite}|${conn.tls.session_resumed}|\
                 ${conn.tls.client.subject.common_name}|${conn.tls.client.issuer}|\
                 ${'client.example.com' in conn.tls.client.san.dns_names}|${size(conn.tls.client.subject.country)}|\
                 ${conn.tls.client.validity.not_after > conn.tls.client.validity.not_before}|\
                 ${conn.tls.client.pem.startsWith('-----BEGIN CERTIFICATE-----')}|\
                 ${conn.tls.server.san.dns_names[0]}|${conn.tls.server.issuer.common_name}|\
                 ${conn.tls.ja4_fingerprint.startsWith('t13d')}";
    // The hosted docs' mutual TLS example is an https endpoint (`ngrok http 8080`)
    // with terminate-tls in on_tcp_connect; requests then read the certificate.
    let mutual = serde_json::json!({
        "on_tcp_connect": [{"actions": [{"type": "terminate-tls", "config": {
            "mutual_tls_certificate_authorities": [clients.pem()]}}]}],
        "on_http_request": [{"actions": [{"type": "custom-response",
            "config": {"body": facts}}]}]
    })
    .to_string();
    let plain = serde_json::json!({
        "on_http_request": [{"actions": [{"type": "custom-response",
            "config": {"body": facts}}]}]
    })
    .to_string();
    let mut dp = pki.start(&[]);
    dp.push(vec![
        cloud("ep_m", "acme", "https://m.example.com:8443", &mutual),
        cloud("ep_p", "acme", "https://p.example.com:8443", &plain),
        cloud(
            "ep_v",
            "acme",
            "https://v.example.com:8443",
            "on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n        config: {min_version: '1.3'}\n\
             on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: v}\n",
        ),
    ]);
    let addr = dp.listener(PORT);
    let with_cert = client_with_certificate(&pki, Some((&cert, &key)));
    let without = client_with_certificate(&pki, None);

    let (response, _) = tls_get(&with_cert, addr, "m.example.com", "m.example.com");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        "1.3|TLS_AES_256_GCM_SHA384|false|ExampleClient|CN=client CA|true|0|\
         true|true|m.example.com|innergate test CA|true"
    );
    // require-and-verify (the default): no certificate, no request.
    assert_eq!(status_over(&without, addr, "m.example.com"), None);

    // Without terminate-tls nothing is asked of the client; its fields read empty.
    let (response, _) = tls_get(&without, addr, "p.example.com", "p.example.com");
    assert_eq!(
        response.text(),
        "1.3|TLS_AES_256_GCM_SHA384|false|||false|0|false|false|p.example.com|innergate test CA|true"
    );

    // Its versions: a TLS 1.2 client is turned away where min_version is 1.3 only.
    let tls12_only = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    assert_eq!(status_over(&tls12_only, addr, "v.example.com"), None);
    assert_eq!(status_over(&tls12_only, addr, "p.example.com"), Some(200));
    assert_eq!(status_over(&without, addr, "v.example.com"), Some(200));
}
