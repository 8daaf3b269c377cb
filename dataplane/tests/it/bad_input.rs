//! Bad input (SPEC §8): refused with the right status, never forwarded, no crash.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

fn setup() -> (Backend, DataPlane) {
    let backend = Backend::echo();
    let mut dp = DataPlane::start_with(&["--header-timeout", "1s", "--idle-timeout", "1s"]);
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        backend.addr,
    )]);
    (backend, dp)
}

#[test]
fn ambiguous_or_malformed_requests_are_refused_and_not_forwarded() {
    let (backend, dp) = setup();
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 2, 2\r\n\r\nab", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: -2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nHost: other.example.com\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX\x00: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX: a\rb\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: app.example.com\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: app.example.com\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        let (res, mut conn) = raw(dp.http_addr(), request);
        let shown = String::from_utf8_lossy(request);
        assert_eq!(res.status, *status, "{shown}");
        assert!(res.error_code().is_some(), "{shown}");
        assert!(conn.is_closed(), "connection left open after {shown}");
    }
    assert!(
        backend.requests().is_empty(),
        "forwarded: {:?}",
        backend.requests()
    );
}

#[test]
fn bad_chunked_bodies_are_not_forwarded_past_the_error() {
    let (backend, dp) = setup();
    let (res, _) = raw(
        dp.http_addr(),
        b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(res.status, 400);
    // The backend saw at most a request whose body never completed.
    assert!(backend.requests().is_empty());
}

#[test]
fn oversized_heads_get_431() {
    let (backend, dp) = setup();
    let mut big = b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let (res, _) = raw(dp.http_addr(), &big);
    assert_eq!(res.status, 431);
    let mut many = b"GET / HTTP/1.1\r\nHost: app.example.com\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let (res, _) = raw(dp.http_addr(), &many);
    assert_eq!(res.status, 431);
    assert!(backend.requests().is_empty());
}

#[test]
fn slow_and_idle_clients_are_timed_out_while_others_are_served() {
    let (_backend, dp) = setup();
    // A head that never completes.
    let mut slow = HttpConn::connect(dp.http_addr());
    slow.send(b"GET / HTTP/1.1\r\nHost: app.exa");
    // A connection that never sends anything.
    let mut silent = HttpConn::connect(dp.http_addr());
    // A kept-alive connection that goes quiet after one request.
    let mut idle = HttpConn::connect(dp.http_addr());
    assert_eq!(idle.get("app.example.com", "/").status, 200);
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(slow.is_closed());
    assert!(silent.is_closed());
    assert!(idle.is_closed());
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").status, 200);
}

#[test]
fn a_truncated_body_does_not_hurt_the_worker() {
    let (_backend, dp) = setup();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(dp.http_addr()).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 100\r\n\r\nabc")
            .unwrap();
        drop(s);
    }
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").status, 200);
}

#[test]
fn connection_limit_closes_extra_connections() {
    let backend = Backend::text("ok");
    let mut dp = DataPlane::start_with(&["--max-connections-per-worker", "2"]);
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        backend.addr,
    )]);
    // Hold four connections open (two per worker at most).
    let held: Vec<_> = (0..6).map(|_| HttpConn::connect(dp.http_addr())).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut served = 0;
    for mut conn in held {
        conn.send(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
        if conn.try_read_response().is_some() {
            served += 1;
        }
    }
    assert!(
        served <= 4,
        "{served} connections served over a limit of 2 per worker"
    );
    assert!(served >= 1);
}
