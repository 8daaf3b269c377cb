//! Agent mode: an endpoint that lives as long as its agent.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::*;

fn start_agent(control: &Control, key: &str, upstream: &str) -> KillOnDrop {
    let mut child = Command::new(innergate_bin())
        .args(["http", upstream, "--url", "http://agent.example.com"])
        .env("INNERGATE_API_URL", &control.api)
        .env("INNERGATE_API_KEY", key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("http://agent.example.com -> http://127.0.0.1:"),
        "{line}"
    );
    KillOnDrop(Some(child))
}

#[test]
fn an_agent_endpoint_lives_while_its_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(dir.path());
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let key = control.account("alice");
    let api = control.client(&key);
    let upstream = backend("from the agent's service");
    let port = upstream.port().to_string();

    // Ctrl-C removes the endpoint.
    let agent = start_agent(&control, &key, &port);
    assert_eq!(
        http_get(dp.http_addr(), "agent.example.com"),
        (200, "from the agent's service".into())
    );
    // Renewals keep it past several lease lengths (2 s).
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(api.list(None, None).unwrap().endpoints.len(), 1);
    // SAFETY: signalling our own child.
    let mut agent = agent;
    let child = agent.0.take().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(api.list(None, None).unwrap().endpoints.is_empty());

    // kill -9: the lease expires and control removes it.
    let mut agent = start_agent(&control, &key, &port);
    assert_eq!(api.list(None, None).unwrap().endpoints.len(), 1);
    let addr = dp.http_addr();
    let mut child = agent.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    eventually("the lease to expire", || {
        api.list(None, None).unwrap().endpoints.is_empty()
    });
    // It was the only public endpoint: the data plane closes the listener.
    eventually("the data plane to drop it", || {
        std::net::TcpStream::connect(addr).is_err()
    });
}
