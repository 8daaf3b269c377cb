//! The hosted service's documented policy examples, verbatim (hosted_examples/, one
//! file per example, copied from its docs), created through the API. Those that name
//! what only the hosted service has are refused with a reason that says so; every
//! other one is accepted as written. What they do is tested on sockets in the data
//! plane's suite (dataplane/tests/it/hosted_docs.rs).

use innergate::endpoint::CreateEndpoint;

use crate::support::*;

/// Examples refused on purpose, with a word the refusal must contain.
const REFUSED: &[(&str, &str)] = &[
    // IP policy objects are stored by the hosted service.
    ("restrict-ips-01", "ip_policies"),
    ("restrict-ips-03", "ip_policies"),
    ("restrict-ips-04", "ip_policies"),
    ("restrict-ips-07", "ip_policies"),
    // The docs' placeholders (`... certificate ...`) are not PEM.
    ("terminate-tls-02", "server_certificate"),
    ("terminate-tls-03", "mutual_tls_certificate_authorities"),
    // `request.headers` is a typo of the docs (there is no `request`); the example
    // also reads conn.tls.client.pem.
    ("set-vars-05", "request.headers"),
    // Reads the results of the http-request action, which innergate does not have.
    ("set-vars-06", "actions.ngrok.http_request"),
];

fn examples() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/hosted_examples");
    let mut all: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    all.sort();
    all
}

#[test]
fn the_documented_examples_are_accepted_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(&dir.path().join("control"), None);
    let api = control.client(&control.account("alice"));
    let all = examples();
    assert!(all.len() >= 40, "{} examples", all.len());
    for (i, (name, policy)) in all.iter().enumerate() {
        let connect_only = !policy.contains("on_http_");
        let (url, upstream) = match (connect_only, policy.contains("terminate-tls")) {
            (true, true) => (
                format!("tls://ex{i}.example.com:8443"),
                "tls://127.0.0.1:9".to_string(),
            ),
            (true, false) => (
                format!("tcp://127.0.0.1:{}", 30_000 + i),
                "tcp://127.0.0.1:9".to_string(),
            ),
            (false, _) => (
                format!("https://ex{i}.example.com"),
                "http://127.0.0.1:9".to_string(),
            ),
        };
        let created = api.create(&CreateEndpoint {
            url,
            upstream_url: Some(upstream),
            traffic_policy: Some(policy.clone()),
            ..Default::default()
        });
        match (REFUSED.iter().find(|(n, _)| n == name), created) {
            (None, Ok(_)) => {}
            (None, Err(e)) => panic!("{name} was refused: {e}\n{policy}"),
            (Some((_, why)), Err(e)) => {
                assert_eq!(e.status_code, 400, "{name}: {e}");
                assert!(e.msg.contains(why), "{name}: {e}");
            }
            (Some(_), Ok(_)) => panic!("{name} was expected to be refused"),
        }
    }
}

/// A request to `host` with extra header lines: (status, body).
fn request(addr: std::net::SocketAddr, host: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn documented_examples_created_through_the_api_behave_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(dir.path());
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let api = control.client(&control.account("alice"));
    let example = |name: &str| examples().into_iter().find(|(n, _)| n == name).unwrap().1;
    let upstream = format!("http://{}", backend("from the upstream"));
    for (host, name) in [
        ("auth.example.com", "basic-auth-01"),
        ("limit.example.com", "rate-limit-01"),
        ("vars.example.com", "set-vars-02"),
    ] {
        api.create(&CreateEndpoint {
            url: format!("http://{host}"),
            upstream_url: Some(upstream.clone()),
            traffic_policy: Some(example(name)),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let addr = dp.http_addr();
    eventually("the endpoints served", || {
        request(addr, "vars.example.com", "").0 == 200
    });

    // set-vars: "Hello, World!" from the two variables.
    assert_eq!(
        request(addr, "vars.example.com", ""),
        (200, "Hello, World!".to_string())
    );
    // basic-auth: 401 without credentials, the custom response with them.
    assert_eq!(request(addr, "auth.example.com", "").0, 401);
    assert_eq!(
        request(
            addr,
            "auth.example.com",
            "Authorization: Basic dXNlcjpwYXNzd29yZDE=\r\n"
        ),
        (200, "Successfully Authenticated!".to_string())
    );
    // rate-limit: 30 per minute for a Host, then 429.
    for _ in 0..30 {
        assert_eq!(request(addr, "limit.example.com", "").0, 200);
    }
    assert_eq!(request(addr, "limit.example.com", "").0, 429);
}
