//! The CLI as a user runs it: accounts, endpoints in text and JSON, errors, `up`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::*;

/// A GET over TLS trusting only `ca_pem`; returns the body.
fn https_get(port: u16, host: &str, ca_pem: &[u8]) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (response, _) = tls_get(&tls_client_config_pem(ca_pem), addr, host, host);
    response.text()
}

fn api(control: &Control, key: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["api", "endpoints"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--api-url", &control.api, "--api-key", key]);
    run(&all)
}

#[test]
fn endpoints_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let key = control.account("alice");
    let policy_file = dir.path().join("policy.yml");
    std::fs::write(&policy_file, HELLO).unwrap();
    let at_file = format!("@{}", policy_file.display());
    let out = api(
        &control,
        &key,
        &[
            "create",
            "--url",
            "example.internal",
            "--traffic-policy",
            &at_file,
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["url"], "https://example.internal");
    assert_eq!(created["traffic_policy"], HELLO);
    let id = created["id"].as_str().unwrap();

    let text = String::from_utf8(api(&control, &key, &["list"]).stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("ID"));
    let row = lines.next().unwrap();
    assert!(
        row.contains(id) && row.contains("https://example.internal") && row.contains("internal"),
        "{row}"
    );

    let shown = String::from_utf8(api(&control, &key, &["get", id]).stdout).unwrap();
    assert!(
        shown.contains("url             https://example.internal"),
        "{shown}"
    );
    assert!(shown.contains("Hello world!"));

    let out = api(
        &control,
        &key,
        &["update", id, "--description", "greeter", "--json"],
    );
    let updated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(updated["description"], "greeter");

    let bad = api(
        &control,
        &key,
        &["create", "--url", "http://x.example.com/path"],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("may not have a path") && stderr.contains("ERR_IG_7100"),
        "{stderr}"
    );

    let out = api(&control, &key, &["delete", id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("deleted {id}")
    );
    let missing = api(&control, &key, &["get", id]);
    assert!(!missing.status.success());

    let no_key = run(&["api", "endpoints", "list", "--api-url", &control.api]);
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("INNERGATE_API_KEY"));
}

#[test]
fn accounts_can_be_created_without_a_running_control() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "accounts",
        "create",
        "offline",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let control = Control::start(dir.path(), None);
    assert!(control
        .client(&key)
        .list(None, None)
        .unwrap()
        .endpoints
        .is_empty());
}

#[test]
fn up_serves_the_seed_quickstart_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    // The quickstart's public port must be a fixed URL port; take a free one.
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The tunnel listener too (its default, 4443, may be taken on a test machine).
    let tunnel_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    dataplane_bin();
    let up = Command::new(innergate_bin())
        .args([
            "up",
            "--api",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--http-port",
            &http_port.to_string(),
            "--tunnel-port",
            &tunnel_port.to_string(),
            "--data",
        ])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = KillOnDrop::new(up);
    let mut reader = BufReader::new(up.child().stdout.take().unwrap());
    let (mut api_url, mut key) = (String::new(), String::new());
    let mut tunnel = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if let Some(v) = line.trim().strip_prefix("tunnel:") {
            tunnel = v.split_whitespace().next().unwrap_or_default().to_string();
        }
        if let Some(v) = line.trim().strip_prefix("API:") {
            api_url = v.trim().to_string();
        }
        if let Some(v) = line.trim().strip_prefix("API key:") {
            key = v.split_whitespace().next().unwrap().to_string();
        }
        if line.contains("Ctrl-C stops") {
            break;
        }
        line.clear();
    }
    assert!(
        api_url.starts_with("http://127.0.0.1:") && key.starts_with("ig_"),
        "{api_url} {key}"
    );
    assert_eq!(
        tunnel,
        format!("127.0.0.1:{tunnel_port}"),
        "up prints its tunnel"
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    eventually("the seed quickstart", || {
        std::net::TcpStream::connect(addr).is_ok()
            && http_get(addr, "hello.localhost") == (200, "Hello world!".into())
    });
    let listed = run(&[
        "api",
        "endpoints",
        "list",
        "--json",
        "--api-url",
        &api_url,
        "--api-key",
        &key,
    ]);
    let page: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(page["endpoints"].as_array().unwrap().len(), 2);

    // https works out of the box with the development certificate `up` made.
    let https_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://localhost:{https_port}");
    let created = run(&[
        "api", "endpoints", "create", "--url", &url,
        "--traffic-policy", "on_http_request: [{actions: [{type: forward-internal, config: {url: 'https://example.internal'}}]}]",
        "--api-url", &api_url, "--api-key", &key,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let dev_cert = std::fs::read(dir.path().join("data/tls/dev.crt")).unwrap();
    assert_eq!(
        https_get(https_port, "localhost", &dev_cert),
        "Hello world!"
    );
    up.signal(libc::SIGINT);
    let status = up.take().wait().unwrap();
    assert!(status.success(), "{status}");
    eventually("the data plane to stop", || {
        std::net::TcpStream::connect(addr).is_err()
    });
}
