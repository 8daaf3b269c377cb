//! The admin listener: /healthz and /metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::support::*;

pub(crate) fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub(crate) fn metric(body: &str, line_start: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn healthz_waits_for_a_table_and_metrics_count_per_endpoint() {
    let admin: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let admin_arg = admin.to_string();
    let mut dp = DataPlane::start_with(&["--admin", &admin_arg]);
    assert_eq!(
        admin_get(admin, "/healthz").0,
        503,
        "not ready before a table"
    );
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    dp.push(vec![
        cloud("ep_ok", "acme", "http://ok.example.com", &answer("fine")),
        agent("ep_down", "acme", "http://down.example.com", refused),
    ]);
    assert_eq!(admin_get(admin, "/healthz"), (200, "ok\n".into()));
    // Several connections, spread over both workers.
    for _ in 0..6 {
        assert_eq!(get(dp.http_addr(), "ok.example.com", "/").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(dp.http_addr(), "down.example.com", "/").status, 502);
    }
    let (status, body) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&body, "innergate_table_version "), 1);
    assert_eq!(
        metric(&body, "innergate_http_responses_total{endpoint_id=\"ep_ok\",url=\"http://ok.example.com\",class=\"2xx\"}"),
        6,
        "{body}"
    );
    assert_eq!(
        metric(&body, "innergate_http_responses_total{endpoint_id=\"ep_down\",url=\"http://down.example.com\",class=\"5xx\"}"),
        2,
        "{body}"
    );
    assert_eq!(metric(&body, "innergate_upstream_connect_errors_total "), 2);
    assert!(metric(&body, "innergate_connections_total ") >= 8, "{body}");
    assert_eq!(admin_get(admin, "/nope").0, 404);
    // A table push keeps the counts of endpoints that stay.
    dp.push(vec![cloud(
        "ep_ok",
        "acme",
        "http://ok.example.com",
        &answer("fine"),
    )]);
    let body = admin_get(admin, "/metrics").1;
    assert_eq!(metric(&body, "innergate_table_version "), 2);
    assert_eq!(
        metric(&body, "innergate_http_responses_total{endpoint_id=\"ep_ok\",url=\"http://ok.example.com\",class=\"2xx\"}"),
        6
    );
}

pub(crate) fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn metrics_count_hops_failures_bytes_and_latency() {
    let admin = free_addr();
    let mut dp = DataPlane::start_with(&["--admin", &admin.to_string()]);
    let backend = Backend::text("hello from the backend");
    dp.push(vec![
        cloud(
            "ep_front",
            "acme",
            "http://front.example.com",
            &forward_to("https://app.internal"),
        ),
        agent("ep_app", "acme", "https://app.internal", backend.addr),
        cloud(
            "ep_lost",
            "acme",
            "http://lost.example.com",
            &forward_to("https://nowhere.internal"),
        ),
    ]);
    for _ in 0..3 {
        let r = get(dp.http_addr(), "front.example.com", "/x");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello from the backend");
    }
    assert_eq!(get(dp.http_addr(), "lost.example.com", "/").status, 404);

    let body = admin_get(admin, "/metrics").1;
    let front = "endpoint_id=\"ep_front\",url=\"http://front.example.com\"";
    let lost = "endpoint_id=\"ep_lost\",url=\"http://lost.example.com\"";
    assert_eq!(
        metric(
            &body,
            &format!("innergate_forward_internal_hops_total{{{front}}} ")
        ),
        3,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            &format!("innergate_forward_internal_failures_total{{{lost},code=\"ERR_IG_3200\"}} ")
        ),
        1,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            &format!("innergate_http_request_duration_seconds_count{{{front}}} ")
        ),
        3,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            &format!("innergate_http_request_duration_seconds_bucket{{{front},le=\"+Inf\"}} ")
        ),
        3,
        "{body}"
    );
    // Three responses carried the 22-byte body, each after a head.
    let sent = metric(&body, &format!("innergate_bytes_sent_total{{{front}}} "));
    assert!(sent > 3 * 22 && sent < 3 * 400, "{body}");
    let received = metric(
        &body,
        &format!("innergate_bytes_received_total{{{front}}} "),
    );
    assert!(received >= 3 * 30, "{body}");
}

#[test]
fn access_log_writes_a_json_line_per_request_and_reopens_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut dp = DataPlane::start_with(&["--access-log", log.to_str().unwrap()]);
    let backend = Backend::text("hi");
    dp.push(vec![
        cloud(
            "ep_front",
            "acme",
            "http://front.example.com",
            &forward_to("https://app.internal"),
        ),
        agent("ep_app", "acme", "https://app.internal", backend.addr),
    ]);
    assert_eq!(
        get(dp.http_addr(), "front.example.com", "/a?q=\"1\"").status,
        200
    );
    assert_eq!(get(dp.http_addr(), "nobody.example.com", "/b").status, 404);

    // Each worker hands its own lines over: lines of two connections may come in
    // either order.
    let lines: Vec<serde_json::Value> = wait_for_lines(&log, 2)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = lines.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(first["endpoint_id"], "ep_front");
    assert_eq!(first["account"], "acme");
    assert_eq!(first["forward_internal"], serde_json::json!(["ep_app"]));
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], "front.example.com");
    assert_eq!(first["path"], "/a?q=\"1\"");
    assert_eq!(first["status"], 200);
    assert!(first["bytes_out"].as_u64().unwrap() > 2);
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let second = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert_eq!(second["endpoint_id"], "");
    assert_eq!(second["status"], 404);
    assert_eq!(second["error_code"], "ERR_IG_3200");

    // logrotate moves the file, then signals: new lines go to a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    dp.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !log.exists() {
        assert!(std::time::Instant::now() < deadline, "log not reopened");
        // Each request may come before the reopen; it then lands in the old file.
        assert_eq!(get(dp.http_addr(), "front.example.com", "/c").status, 200);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(get(dp.http_addr(), "front.example.com", "/d").status, 200);
    let after = wait_for_lines(&log, 1);
    assert!(
        after.iter().any(|l| l.contains("\"path\":\"/d\"")),
        "{after:?}"
    );
    assert!(std::fs::read_to_string(&rotated).unwrap().lines().count() >= 2);

    // A clean stop writes what was still buffered.
    assert_eq!(
        get(dp.http_addr(), "front.example.com", "/last").status,
        200
    );
    assert!(dp.signal_and_wait(libc::SIGTERM).success());
    let all = std::fs::read_to_string(&log).unwrap();
    assert!(all.contains("\"path\":\"/last\""), "{all}");
}

/// The log's lines once it has at least `n` (workers hand lines over every 250 ms).
fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} lines expected: {lines:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
