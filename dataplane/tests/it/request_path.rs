//! The request path's guarantees, seen from a client socket: on_tcp_connect admits
//! every endpoint a connection reaches, its vars last the connection, a panic ends
//! one connection only, connection fields stay behind, checks run in a fixed order
//! and every exchange is counted once, pooled connections are swept, a refused table
//! leaves no trace, a drain loses no request, and rate limits count exact keys.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use crate::admin::{admin_get, free_addr, metric};
use crate::support::*;

/// Denies loopback clients when they connect.
const DENY_LOOPBACK_ON_CONNECT: &str = "on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config: {deny: [127.0.0.0/8]}\n";

#[test]
fn on_tcp_connect_runs_for_every_endpoint_a_connection_reaches() {
    let open = Backend::text("open");
    let secret = Backend::text("secret");
    let mut dp = DataPlane::start();
    dp.push(vec![
        agent("ep_a", "acme", "http://a.example.com", open.addr),
        with_policy(
            agent("ep_b", "acme", "http://b.example.com", secret.addr),
            DENY_LOOPBACK_ON_CONNECT,
        ),
    ]);
    // A first request to an endpoint without on_tcp_connect, then one to b.
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(conn.get("a.example.com", "/").text(), "open");
    conn.send(b"GET /secret HTTP/1.1\r\nHost: b.example.com\r\n\r\n");
    assert!(
        conn.try_read_response().is_none(),
        "b's on_tcp_connect closes"
    );
    // The same after a request that matched nothing.
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(conn.get("nothing.example.com", "/").status, 404);
    conn.send(b"GET /secret HTTP/1.1\r\nHost: b.example.com\r\n\r\n");
    assert!(conn.try_read_response().is_none());
    assert!(secret.requests().is_empty(), "b's upstream saw a request");
    assert_eq!(open.requests().len(), 1);
}

#[test]
fn on_tcp_connect_runs_once_per_endpoint_and_its_vars_last_the_connection() {
    let backend = Backend::text("ok");
    let mut dp = DataPlane::start_with_env(&[], &[("RUST_LOG", "warn,innergate::policy=info")]);
    let policy = "on_tcp_connect:\n  - actions:\n      - type: set-vars\n        config: {vars: {port: '${conn.client_port}'}}\n      - type: log\n        config: {metadata: {event: connected}}\non_http_request:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-connect-port: '${vars.port}'}}\non_http_response:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-seen-port: '${vars.port}'}}\n";
    dp.push(vec![with_policy(
        agent("ep_c", "acme", "http://c.example.com", backend.addr),
        policy,
    )]);
    let stream = TcpStream::connect(dp.http_addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let port = stream.local_addr().unwrap().port().to_string();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..3 {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: c.example.com\r\n\r\n")
            .unwrap();
        let r = Response::read_from(&mut reader).expect("a response");
        assert_eq!(
            r.header("x-seen-port"),
            Some(port.as_str()),
            "{:?}",
            r.headers
        );
    }
    let port_of_conn = port;
    let seen = backend.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|r| r.header("x-connect-port") == Some(port_of_conn.as_str())));
    // One log line for the connection of three requests, one for a second connection.
    assert_eq!(get(dp.http_addr(), "c.example.com", "/").status, 200);
    eventually("two connect-phase log lines", || {
        dp.log().matches("\"connected\"").count() == 2
    });
}

#[test]
fn a_panic_ends_its_connection_only() {
    let backend = Backend::text("a body of some length");
    // Large enough to go out after its head, not with it.
    let big = Backend::start(|_| Some(ok(&"b".repeat(100_000))));
    let admin = free_addr();
    let mut dp = DataPlane::start_with(&["--admin", &admin.to_string()]);
    dp.push(vec![
        agent("ep_p", "acme", "http://p.example.com", backend.addr),
        agent("ep_big", "acme", "http://big.example.com", big.addr),
    ]);
    let others: Vec<HttpConn> = (0..4)
        .map(|_| {
            let mut c = HttpConn::connect(dp.http_addr());
            assert_eq!(c.get("p.example.com", "/").status, 200);
            c
        })
        .collect();

    // Before any response byte: a 500 with a code, then the connection closes.
    let (res, mut conn) = raw(
        dp.http_addr(),
        b"GET / HTTP/1.1\r\nHost: p.example.com\r\nx-innergate-fault: before-response\r\n\r\n",
    );
    assert_eq!(res.status, 500);
    assert_eq!(res.error_code(), Some("ERR_IG_5000"));
    assert_eq!(res.header("connection"), Some("close"));
    assert!(conn.is_closed());

    // After the head went out: the connection just closes, short of the body.
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: big.example.com\r\nx-innergate-fault: after-head\r\n\r\n");
    let mut stream = conn.into_stream();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(received.len() < 100_000, "the body was cut short");

    // Every other connection of every worker goes on.
    for mut c in others {
        assert_eq!(c.get("p.example.com", "/").text(), "a body of some length");
    }
    assert_eq!(get(dp.http_addr(), "p.example.com", "/").status, 200);
    let body = admin_get(admin, "/metrics").1;
    assert_eq!(metric(&body, "innergate_panics_total "), 2, "{body}");
    let log = dp.log();
    assert_eq!(
        log.matches("panic while serving a request").count(),
        2,
        "{log}"
    );
    assert!(log.contains("for endpoint ep_p"), "{log}");
}

/// An upstream that answers every request with `response` (raw bytes).
fn raw_backend(response: &'static [u8]) -> Backend {
    Backend::start(move |_| Some(response.to_vec()))
}

#[test]
fn interim_responses_lose_the_error_code_header() {
    let backend = raw_backend(
        b"HTTP/1.1 103 Early Hints\r\ninnergate-error-code: ERR_IG_9999\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    );
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_h",
        "acme",
        "http://h.example.com",
        backend.addr,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: h.example.com\r\n\r\n");
    let hints = conn.read_response();
    assert_eq!(hints.status, 103);
    assert_eq!(hints.header("link"), Some("</a.css>"));
    assert_eq!(hints.error_code(), None, "{:?}", hints.headers);
    let done = conn.read_response();
    assert_eq!((done.status, done.text().as_str()), (200, "ok"));
}

#[test]
fn fields_named_by_connection_stay_behind_both_ways() {
    let backend = raw_backend(
        b"HTTP/1.1 200 OK\r\nconnection: x-internal\r\nx-internal: 1\r\nx-public: 2\r\ncontent-length: 2\r\n\r\nok",
    );
    let mut dp = DataPlane::start();
    // A field the policy adds is the policy's: a client cannot name it away.
    dp.push(vec![with_policy(
        agent("ep_n", "acme", "http://n.example.com", backend.addr),
        "on_http_request:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-user: from-policy}}\n",
    )]);
    let (res, _conn) = raw(
        dp.http_addr(),
        b"GET / HTTP/1.1\r\nHost: n.example.com\r\nConnection: close, x-secret, x-user\r\nx-secret: 1\r\nx-kept: 2\r\nx-user: forged\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-internal"), None, "{:?}", res.headers);
    assert_eq!(res.header("x-public"), Some("2"));
    let seen = &backend.requests()[0];
    assert_eq!(seen.header("x-secret"), None, "{:?}", seen.headers);
    assert_eq!(seen.header("x-kept"), Some("2"));
    let users: Vec<_> = seen.headers.iter().filter(|(n, _)| n == "x-user").collect();
    assert_eq!(users.len(), 1, "{:?}", seen.headers);
    assert_eq!(users[0].1, "from-policy");
}

#[test]
fn the_policy_decides_before_the_body_limit_and_every_exchange_is_counted_once() {
    let backend = Backend::text("upstream");
    let admin = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut dp = DataPlane::start_with(&[
        "--admin",
        &admin.to_string(),
        "--access-log",
        log.to_str().unwrap(),
    ]);
    let policy = "on_http_request:\n  - expressions: [\"req.url.path == '/deny'\"]\n    actions: [{type: deny}]\n  - expressions: [\"req.url.path == '/answer'\"]\n    actions: [{type: custom-response, config: {body: answered}}]\n  - expressions: [\"req.url.path == '/close'\"]\n    actions: [{type: close-connection}]\n";
    let mut record = with_policy(
        agent("ep_o", "acme", "http://o.example.com", backend.addr),
        policy,
    );
    record.max_request_body = 10;
    dp.push(vec![record]);
    // Head and body in one write, each on its own connection.
    let post = |path: &str| {
        let mut request =
            format!("POST {path} HTTP/1.1\r\nHost: o.example.com\r\ncontent-length: 100\r\n\r\n")
                .into_bytes();
        request.extend_from_slice(&[b'x'; 100]);
        raw(dp.http_addr(), &request).0
    };
    assert_eq!(post("/deny").status, 403);
    let answered = post("/answer");
    assert_eq!(
        (answered.status, answered.text().as_str()),
        (200, "answered")
    );
    assert_eq!(post("/up").status, 413);
    assert!(backend.requests().is_empty());
    let (_, mut closed) = raw(
        dp.http_addr(),
        b"GET /x HTTP/1.1\r\nHost: o.example.com\r\n\r\n",
    );
    closed.send(b"GET /close HTTP/1.1\r\nHost: o.example.com\r\n\r\n");
    assert!(closed.try_read_response().is_none());
    let (res, _) = raw(dp.http_addr(), b"GARBAGE\r\n\r\n");
    assert_eq!(res.status, 400);

    let body = admin_get(admin, "/metrics").1;
    let labels = "endpoint_id=\"ep_o\",url=\"http://o.example.com\"";
    let count = |what: &str| metric(&body, &format!("{what}{{{labels}"));
    assert_eq!(
        count("innergate_http_closed_without_response_total"),
        1,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            &format!("innergate_http_responses_total{{{labels},class=\"4xx\"}}")
        ),
        2,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            &format!("innergate_http_responses_total{{{labels},class=\"2xx\"}}")
        ),
        2,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "innergate_http_unrouted_responses_total{class=\"4xx\"}"
        ),
        1,
        "{body}"
    );
    // One line per exchange: /deny, /answer, /up, /x, /close, and the garbage.
    let lines = eventually_some("six access-log lines", || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.lines().count() >= 6).then_some(text)
    });
    let lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    // Workers write their own lines: compare without order.
    let mut statuses: Vec<u64> = lines
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [0, 200, 200, 400, 403, 413], "{lines:?}");
    let closed = lines.iter().find(|l| l["status"] == 0).unwrap();
    assert_eq!(closed["endpoint_id"], "ep_o");
}

/// An upstream that answers one request per connection and keep-alive, then reports
/// when the proxy closes that connection.
fn closing_watch() -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let closed_tx = closed_tx.clone();
            thread::spawn(move || {
                stream.set_read_timeout(Some(TIMEOUT * 3)).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                if read_head(&mut reader).is_none() {
                    return;
                }
                writer
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .unwrap();
                let mut rest = Vec::new();
                if reader.read_to_end(&mut rest).is_ok() {
                    let _ = closed_tx.send(());
                }
            });
        }
    });
    (addr, closed_rx)
}

#[test]
fn idle_upstream_connections_are_closed_after_their_idle_time() {
    let (upstream, closed) = closing_watch();
    let mut dp = DataPlane::start_with(&["--upstream-idle-timeout", "1s"]);
    dp.push(vec![agent(
        "ep_i",
        "acme",
        "http://i.example.com",
        upstream,
    )]);
    assert_eq!(get(dp.http_addr(), "i.example.com", "/").text(), "ok");
    closed
        .recv_timeout(TIMEOUT)
        .expect("the pooled connection is closed once idle");
}

#[test]
fn pooled_connections_of_a_removed_upstream_are_closed() {
    let (upstream, closed) = closing_watch();
    let other = Backend::text("other");
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_r",
        "acme",
        "http://r.example.com",
        upstream,
    )]);
    assert_eq!(get(dp.http_addr(), "r.example.com", "/").text(), "ok");
    assert!(closed.try_recv().is_err());
    dp.push(vec![agent(
        "ep_s",
        "acme",
        "http://s.example.com",
        other.addr,
    )]);
    closed
        .recv_timeout(TIMEOUT)
        .expect("the table no longer names the upstream: its connection closes");
}

#[test]
fn a_refused_table_leaves_no_trace() {
    let admin = free_addr();
    let mut dp = DataPlane::start_with(&["--admin", &admin.to_string()]);
    let limited = cloud(
        "ep_l",
        "acme",
        "http://l.example.com",
        "on_http_request:\n  - actions:\n      - type: rate-limit\n        config: {capacity: 2, rate: 1h}\n      - type: custom-response\n        config: {body: ok}\n",
    );
    dp.push(vec![limited.clone()]);
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..2 {
        assert_eq!(conn.get("l.example.com", "/").status, 200);
    }
    assert_eq!(conn.get("l.example.com", "/").status, 429);
    // Refused (https without certificates) after it compiled: the endpoint moved to
    // another URL and lost its limit there.
    let moved = cloud("ep_l", "acme", "http://l2.example.com", &answer("x"));
    let refused = dp.try_push(vec![
        moved,
        cloud("ep_tls", "acme", "https://t.example.com", &answer("t")),
    ]);
    assert!(refused.is_err(), "{refused:?}");
    // The same table again, as control pushes it after a reconnect.
    dp.push(vec![limited]);
    assert_eq!(
        conn.get("l.example.com", "/").status,
        429,
        "the count is kept"
    );
    let body = admin_get(admin, "/metrics").1;
    assert!(!body.contains("l2.example.com"), "{body}");
    assert!(!body.contains("ep_tls"), "{body}");
}

#[test]
fn rate_limits_count_every_key_on_its_own() {
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_k",
        "acme",
        "http://k.example.com",
        "on_http_request:\n  - actions:\n      - type: rate-limit\n        config: {capacity: 1, rate: 1h, bucket_key: ['req.headers[\"x-key\"][0]']}\n      - type: custom-response\n        config: {body: ok}\n",
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    let mut ask = |key: &str| {
        conn.send(
            format!("GET / HTTP/1.1\r\nHost: k.example.com\r\nx-key: {key}\r\n\r\n").as_bytes(),
        );
        conn.read_response().status
    };
    // Each of 2,000 keys has its own single request: none is spent by another key.
    for i in 0..2000 {
        assert_eq!(ask(&format!("client-{i}")), 200, "key client-{i}");
    }
    assert_eq!(ask("client-7"), 429);
}

#[test]
fn a_drain_answers_every_request_it_accepted() {
    let backend = Backend::text("ok");
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_d",
        "acme",
        "http://d.example.com",
        backend.addr,
    )]);
    let addr = dp.http_addr();
    let answered = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (answered, lost, stop, started) = (
                answered.clone(),
                lost.clone(),
                stop.clone(),
                started.clone(),
            );
            thread::spawn(move || client_until_refused(addr, &answered, &lost, &stop, &started))
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    eventually("every client under way", || {
        started.load(Ordering::SeqCst) >= 16 && answered.load(Ordering::SeqCst) >= 200
    });
    let status = dp.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status}");
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(
        lost.load(Ordering::SeqCst),
        0,
        "requests met a closed socket"
    );
    assert!(answered.load(Ordering::SeqCst) >= 200);
}

/// Sends requests back to back on keep-alive connections, never retrying: a request
/// without an answer is lost. A new connection follows a `Connection: close`; a
/// refused connect ends the client.
fn client_until_refused(
    addr: SocketAddr,
    answered: &AtomicUsize,
    lost: &AtomicUsize,
    stop: &AtomicBool,
    started: &AtomicUsize,
) {
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connect: {e}"),
        };
        if first {
            started.fetch_add(1, Ordering::SeqCst);
            first = false;
        }
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            if writer
                .write_all(b"GET / HTTP/1.1\r\nHost: d.example.com\r\n\r\n")
                .is_err()
            {
                lost.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let Some(response) = Response::read_from(&mut reader) else {
                lost.fetch_add(1, Ordering::SeqCst);
                return;
            };
            assert_eq!(response.status, 200);
            answered.fetch_add(1, Ordering::SeqCst);
            if response.header("connection") == Some("close") {
                // Nothing more may come on this connection.
                assert!(reader.fill_buf().map_or(true, |b| b.is_empty()));
                break;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

#[test]
fn a_connection_naming_many_endpoints_is_admitted_again_not_let_through() {
    let backend = Backend::text("ok");
    let mut dp = DataPlane::start_with_env(&[], &[("RUST_LOG", "warn,innergate::policy=info")]);
    let connect_log = |i: usize| {
        format!("on_tcp_connect:\n  - actions:\n      - type: log\n        config: {{metadata: {{admitted: e{i}}}}}\n")
    };
    dp.push(
        (0..10)
            .map(|i| {
                with_policy(
                    agent(
                        &format!("ep_{i}"),
                        "acme",
                        &format!("http://e{i}.example.com"),
                        backend.addr,
                    ),
                    &connect_log(i),
                )
            })
            .collect(),
    );
    let mut conn = HttpConn::connect(dp.http_addr());
    for i in (0..10).chain([0]) {
        assert_eq!(conn.get(&format!("e{i}.example.com"), "/").status, 200);
    }
    // A connection remembers a bounded number of endpoints: e0, forgotten after nine
    // others, runs its on_tcp_connect again rather than passing without it.
    eventually("e0 admitted twice", || {
        dp.log().matches("\"admitted\":\"e0\"").count() == 2
    });
    assert_eq!(dp.log().matches("\"admitted\":\"e9\"").count(), 1);
}
