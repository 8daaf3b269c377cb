//! The hosted service's own SDKs as agents, unchanged, configured only with the
//! gateway's tunnel address, its CA and an innergate authtoken: the Rust SDK (the
//! `ngrok` crate, in test-agents/ngrok-rs) and the Python SDK (`ngrok` on PyPI, in a
//! venv that scripts/sdk/install.sh makes). Each binds an internal http endpoint, a
//! pooled pair, a tcp and a tls endpoint inside the test's network namespace, serves
//! traffic through public endpoints that forward to them, and takes them offline
//! when its session closes.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use super::*;

/// The Rust SDK agent next to `innergate`, built on demand.
pub(super) fn rust_agent() -> Command {
    let path = innergate_bin().with_file_name("ngrok-sdk-agent");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "innergate-ngrok-rs-agent"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build the Rust SDK test agent");
    }
    Command::new(path)
}

/// The Python SDK agent in its venv (made by scripts/sdk/install.sh if needed).
fn python_agent() -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = match std::env::var("INNERGATE_SDK_PYTHON") {
        Ok(p) => p,
        Err(_) => {
            let out = Command::new(root.join("scripts/sdk/install.sh"))
                .output()
                .expect("scripts/sdk/install.sh runs");
            assert!(
                out.status.success(),
                "the Python SDK cannot be installed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
    };
    let mut cmd = Command::new(python);
    cmd.arg(root.join("scripts/sdk/python_agent.py"));
    cmd
}

/// Starts an SDK agent (`program` and its script, if any) inside the namespace.
pub(super) fn sdk(gw: &Gateway, program: Command, endpoints: &[String]) -> KillOnDrop {
    let mut cmd = gw.ns.command(program.get_program());
    cmd.args(program.get_args())
        .args(["--server-addr", &gw.tunnel, "--authtoken", &gw.key])
        .arg("--ca-cert")
        .arg(gw.path("ca.pem"))
        .env("RUST_LOG", "warn");
    for e in endpoints {
        cmd.args(["--endpoint", e]);
    }
    start_until(cmd, "an SDK agent", |l| l == "READY").0
}

fn serves_every_kind_and_goes_offline_on_close(agent: fn() -> Command) {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "web"]);
    let _a = gw.service(&["http", "18011", "a"]);
    let _b = gw.service(&["http", "18012", "b"]);
    let _db = gw.service(&["echo", DB]);
    let (cert, key) = (gw.path("service.crt"), gw.path("service.key"));
    let _secure = gw.service(&[
        "https",
        SECURE,
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        "secure",
    ]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    gw.create("http://pool.example.com", &forward("https://pool.internal"));
    gw.create(
        &format!("tcp://db.example.com:{TCP_PORT}"),
        &tcp_forward("tcp://db.internal:5432"),
    );
    gw.create(
        &format!("tls://secure.example.com:{TLS_PORT}"),
        &tcp_forward("tls://secure.internal:443"),
    );
    let mut session = sdk(
        &gw,
        agent(),
        &[
            format!("https,https://web.internal,http://127.0.0.1:{WEB},internal"),
            "https,https://pool.internal,http://127.0.0.1:18011,internal,pool".into(),
            "https,https://pool.internal,http://127.0.0.1:18012,internal,pool".into(),
            format!("tcp,tcp://db.internal:5432,tcp://127.0.0.1:{DB}"),
            format!("tls,tls://secure.internal:443,tls://127.0.0.1:{SECURE}"),
        ],
    );
    let http = gw.dp.http_addr();
    assert_eq!(http_get(http, "app.example.com"), (200, "web".to_string()));
    let mut members = BTreeSet::new();
    eventually("both pooled endpoints to answer", || {
        let (status, body) = http_get(http, "pool.example.com");
        assert_eq!(status, 200);
        members.insert(body);
        members.len() == 2
    });
    assert_eq!(
        tcp_round_trip(gw.dp.listener(TCP_PORT), "over the sdk\n"),
        "echo:over the sdk\n"
    );
    let ca = std::fs::read(gw.path("ca.pem")).unwrap();
    let (response, _) = tls_get(
        &tls_client_config_pem(&ca),
        gw.dp.listener(TLS_PORT),
        "secure.example.com",
        "secure.example.com",
    );
    assert_eq!((response.status, response.text()), (200, "secure".into()));
    // Closing the SDK's session (EOF on its stdin) takes every endpoint offline.
    drop(session.child().stdin.take());
    let _ = session.take().wait();
    eventually("the SDK's endpoints to go offline", || {
        http_get(http, "app.example.com").0 == 404 && http_get(http, "pool.example.com").0 == 404
    });
    eventually("no tunnel endpoint to outlive its session", || {
        let page = gw.control.client(&gw.key).list(None, None).unwrap();
        page.endpoints
            .iter()
            .all(|e| e.held_by.to_string() != "tunnel")
    });
    let _ = std::io::stdout().flush();
}

#[test]
fn the_rust_sdk_is_an_agent_unchanged() {
    serves_every_kind_and_goes_offline_on_close(rust_agent);
}

#[test]
fn the_python_sdk_is_an_agent_unchanged() {
    serves_every_kind_and_goes_offline_on_close(python_agent);
}
