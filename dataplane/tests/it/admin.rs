//! The admin listener: /healthz and /metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::support::*;

fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
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

fn metric(body: &str, line_start: &str) -> u64 {
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
