//! The request actions beyond the basics: close-connection, redirect, url-rewrite,
//! restrict-ips and basic-auth, each matching and not.

use crate::support::*;

#[test]
fn close_connection_answers_nothing() {
    let policy = "on_http_request:\n  - expressions: [\"req.url.path == '/bye'\"]\n    actions: [{type: close-connection}]\n  - actions: [{type: custom-response, config: {body: hi}}]\n";
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "http://app.example.com",
        policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(conn.get("app.example.com", "/").text(), "hi");
    conn.send(b"GET /bye HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
    assert!(conn.try_read_response().is_none());
}

#[test]
fn redirects_with_and_without_from() {
    let policy = r#"
on_http_request:
  - actions:
      - type: redirect
        config:
          from: "^http://app.example.com/old/(?P<rest>.*)$"
          to: "https://new.example.com/${req.method}/$rest"
          status_code: 301
          headers: {x-why: moved}
  - expressions: ["req.url.path == '/away'"]
    actions:
      - type: redirect
        config: {to: "https://elsewhere.example.com/"}
  - actions:
      - type: custom-response
        config: {body: stayed}
"#;
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "http://app.example.com",
        policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = conn.get("app.example.com", "/old/a/b?c=d");
    assert_eq!(res.status, 301);
    assert_eq!(
        res.header("location"),
        Some("https://new.example.com/GET/a/b?c=d")
    );
    assert_eq!(res.header("x-why"), Some("moved"));
    let res = conn.get("app.example.com", "/away");
    assert_eq!(
        (res.status, res.header("location")),
        (302, Some("https://elsewhere.example.com/"))
    );
    assert_eq!(conn.get("app.example.com", "/new").text(), "stayed");
}

#[test]
fn url_rewrite_changes_what_the_upstream_sees() {
    let backend = Backend::start(|r| Some(ok(&r.target)));
    let policy = r#"
on_http_request:
  - actions:
      - type: url-rewrite
        config: {from: "/api/v1/(.*)$", to: "/v2/$1"}
      - type: url-rewrite
        config: {from: "secret=[^&]*", to: "secret=redacted"}
"#;
    let mut dp = DataPlane::start();
    dp.push(vec![with_policy(
        agent("ep_app", "acme", "http://app.example.com", backend.addr),
        policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(
        conn.get("app.example.com", "/api/v1/users?secret=x&a=1")
            .text(),
        "/v2/users?secret=redacted&a=1"
    );
    assert_eq!(conn.get("app.example.com", "/other").text(), "/other");
}

fn restricted(bind: &str, allow: &str, deny: &str) -> (u16, u16) {
    let policy = format!(
        "on_http_request:\n  - actions:\n      - type: restrict-ips\n        config: {{allow: [{allow}], deny: [{deny}]}}\n      - type: custom-response\n        config: {{body: in}}\n"
    );
    let mut dp = DataPlane::start_with(&["--bind", bind]);
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "http://app.example.com",
        &policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
    let first = conn.read_response();
    let code = first.error_code().map(|c| c == "ERR_IG_3301");
    assert!(first.status == 200 || code == Some(true), "{first:?}");
    (
        first.status,
        get(dp.http_addr(), "app.example.com", "/").status,
    )
}

#[test]
fn restrict_ips_uses_the_peer_address_v4_and_v6() {
    assert_eq!(restricted("127.0.0.1", "127.0.0.0/8", ""), (200, 200));
    assert_eq!(
        restricted("127.0.0.1", "10.0.0.0/8", ""),
        (403, 403),
        "X-Forwarded-For is ignored"
    );
    assert_eq!(
        restricted("127.0.0.1", "0.0.0.0/0", "127.0.0.1"),
        (403, 403)
    );
    assert_eq!(restricted("::1", "'::1/128'", ""), (200, 200));
    assert_eq!(restricted("::1", "'2001:db8::/32'", ""), (403, 403));
    assert_eq!(restricted("::1", "", "'::/0'"), (403, 403));
}

#[test]
fn basic_auth_good_bad_and_missing() {
    let backend = Backend::text("secret stuff");
    let policy = "on_http_request:\n  - actions:\n      - type: basic-auth\n        config: {credentials: ['ann:s3cret', 'bob:hunter2'], realm: staff}\n";
    let mut dp = DataPlane::start();
    dp.push(vec![with_policy(
        agent("ep_app", "acme", "http://app.example.com", backend.addr),
        policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = conn.get("app.example.com", "/");
    assert_eq!(res.status, 401);
    assert_eq!(
        res.header("www-authenticate"),
        Some("Basic realm=\"staff\", charset=\"UTF-8\"")
    );
    assert_eq!(res.error_code(), Some("ERR_IG_3302"));
    // ann:s3cret, then ann:wrong, then bob:hunter2
    for (token, status) in [
        ("YW5uOnMzY3JldA==", 200),
        ("YW5uOndyb25n", 401),
        ("Ym9iOmh1bnRlcjI=", 200),
        ("!!", 401),
    ] {
        conn.send(
            format!(
                "GET / HTTP/1.1\r\nHost: app.example.com\r\nAuthorization: Basic {token}\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(conn.read_response().status, status, "{token}");
    }
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn rate_limit_trips_at_capacity_across_workers_and_recovers() {
    let policy = r#"
on_http_request:
  - actions:
      - type: rate-limit
        config:
          capacity: 5
          rate: 60s
          bucket_key: ["req.headers['x-user'][0]"]
      - type: custom-response
        config: {body: ok}
  "#;
    let quick = "on_http_request:\n  - actions:\n      - type: rate-limit\n        config: {capacity: 3, rate: 1s}\n      - type: custom-response\n        config: {body: ok}\n";
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud("ep_app", "acme", "http://app.example.com", policy),
        cloud("ep_quick", "acme", "http://quick.example.com", quick),
    ]);
    let addr = dp.http_addr();
    let ask = |host: &str, user: &str| {
        // A new connection each time: the kernel spreads them over both workers.
        let mut conn = HttpConn::connect(addr);
        conn.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-User: {user}\r\n\r\n").as_bytes());
        conn.read_response()
    };
    let statuses: Vec<u16> = (0..8)
        .map(|_| ask("app.example.com", "ann").status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let refused = ask("app.example.com", "ann");
    assert_eq!(refused.error_code(), Some("ERR_IG_3303"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(ask("app.example.com", "bob").status, 200, "another bucket");
    // A table push that keeps the endpoint and its limit keeps the counts.
    dp.push(vec![
        cloud("ep_app", "acme", "http://app.example.com", policy),
        cloud("ep_quick", "acme", "http://quick.example.com", quick),
        cloud("ep_other", "acme", "http://other.example.com", &answer("x")),
    ]);
    assert_eq!(
        ask("app.example.com", "ann").status,
        429,
        "counts survive a push"
    );

    let statuses: Vec<u16> = (0..4)
        .map(|_| ask("quick.example.com", "x").status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    // Waiting out the windows is the point here: after two of the policy's 1 s
    // windows nothing of the earlier counts is left. Polling cannot replace it: a
    // request that finds room is counted, and room comes back bit by bit.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let statuses: Vec<u16> = (0..3)
        .map(|_| ask("quick.example.com", "x").status)
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200],
        "two windows later the bucket is free"
    );
}

#[test]
fn log_writes_one_structured_line_per_hit() {
    let policy = r#"
on_http_request:
  - expressions: ["req.url.path == '/audit'"]
    actions:
      - type: log
        config: {metadata: {who: "${req.headers['x-user'][0]}", path: "${req.url.path}"}}
  - actions:
      - type: custom-response
        config: {body: ok}
on_http_response:
  - actions:
      - type: log
        config: {metadata: {status: "${res.status_code}"}}
"#;
    let mut dp = DataPlane::start_with_env(&[], &[("RUST_LOG", "warn,innergate::policy=info")]);
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "http://app.example.com",
        policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET /audit HTTP/1.1\r\nHost: app.example.com\r\nX-User: ann\r\n\r\n");
    assert_eq!(conn.read_response().text(), "ok");
    assert_eq!(conn.get("app.example.com", "/quiet").text(), "ok");
    let lines: Vec<serde_json::Value> = dp
        .log()
        .lines()
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["endpoint_id"], "ep_app");
    assert_eq!(lines[0]["phase"], "on_http_request");
    assert_eq!(lines[0]["metadata"]["who"], "ann");
    assert_eq!(lines[0]["metadata"]["path"], "/audit");
    assert_eq!(lines[1]["metadata"]["status"], "200");
    assert_eq!(lines[2]["metadata"]["status"], "200");
}
