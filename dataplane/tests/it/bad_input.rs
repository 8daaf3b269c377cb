//! Bad input (SPEC §8): refused with the right status, never forwarded, no crash.

use std::io::Write;
use std::net::TcpStream;

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
    // Each waits for its close (EOF), up to 5 s, well past the 1 s timeouts.
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
    let mut held: Vec<_> = (0..6).map(|_| HttpConn::connect(dp.http_addr())).collect();
    let mut served = 0;
    // Every connection stays open until all are asked, so no slot frees while an
    // extra one still waits to be accepted: each answers, or is closed, whenever the
    // data plane gets to it.
    for conn in &mut held {
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

/// What must become of a request: refused (never forwarded), or forwarded in a
/// normalised form the backend can only read one way.
enum Expect {
    Refused(u16),
    Forwarded(fn(&Recorded) -> bool),
}

#[test]
fn request_smuggling_table() {
    use Expect::*;
    let cases: Vec<(&str, &[u8], Expect)> = vec![
        ("CL and TE", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Refused(400)),
        ("TE and CL, reversed", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n", Refused(400)),
        ("CL with inner space", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1 2\r\n\r\n", Refused(400)),
        ("CL in hex", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 0x10\r\n\r\n", Refused(400)),
        ("CL overflowing", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 99999999999999999999\r\n\r\n", Refused(400)),
        ("TE xchunked", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", Refused(400)),
        ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Refused(400)),
        ("TE with a vertical tab", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", Refused(400)),
        ("space before colon", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", Refused(400)),
        ("obs-fold in CL", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1\r\n 0\r\n\r\n", Refused(400)),
        ("empty header name", b"GET / HTTP/1.1\r\nHost: app.example.com\r\n: x\r\n\r\n", Refused(400)),
        ("DEL in a value", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX: a\x7fb\r\n\r\n", Refused(400)),
        ("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: app.example.com\r\n\r\n", Refused(400)),
        ("space in method", b"GE T / HTTP/1.1\r\nHost: app.example.com\r\n\r\n", Refused(400)),
        ("userinfo in Host", b"GET / HTTP/1.1\r\nHost: user@app.example.com\r\n\r\n", Refused(400)),
        ("absolute target naming another host", b"GET http://evil.example.com/x HTTP/1.1\r\nHost: app.example.com\r\n\r\n", Refused(400)),
        ("chunk size with a plus", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", Refused(400)),
        ("chunk size with junk", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n", Refused(400)),
        ("chunk size overflowing", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n", Refused(400)),
        ("chunk data longer than its size", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", Refused(400)),
        ("bare LF in chunk framing", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", Refused(400)),
        ("folded trailer", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", Refused(400)),
        ("CR in a header name", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX\rY: a\r\n\r\n", Refused(400)),
        ("NUL in a value", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX: a\x00b\r\n\r\n", Refused(400)),
        ("duplicate Host differing in case", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nhost: APP.example.com\r\n\r\n", Refused(400)),
        ("CL with a plus sign", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: +5\r\n\r\nhello", Refused(400)),
        ("tab before colon", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length\t: 5\r\n\r\nhello", Refused(400)),
        ("first header line folded", b"GET / HTTP/1.1\r\n Host: app.example.com\r\n\r\n", Refused(400)),
        ("absolute target of its own host", b"GET http://APP.example.com:80/p?q=1 HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
            Forwarded(|r| r.target == "/p?q=1")),
        ("h2c upgrade attempt", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            // HTTP2-Settings is named by Connection: it describes this connection only.
            Forwarded(|r| r.header("upgrade").is_none() && r.header("connection").is_none() && r.header("http2-settings").is_none())),
        ("websocket upgrade that also offers h2c", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
            Forwarded(|r| r.header("upgrade").is_none() && r.header("connection").is_none())),
        ("bare LF line endings", b"GET /lf HTTP/1.1\nHost: app.example.com\nX-A: 1\n\n",
            Forwarded(|r| r.target == "/lf" && r.header("x-a") == Some("1"))),
        ("zero-padded CL", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 005\r\n\r\nhello",
            Forwarded(|r| r.body == b"hello")),
        ("TE with extra spaces", b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding:   chunked  \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Forwarded(|r| r.chunked && r.body == b"hello")),
        ("client X-Forwarded-Proto", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example.com\r\n\r\n",
            Forwarded(|r| r.header("x-forwarded-proto") == Some("http") && r.header("x-forwarded-host") == Some("app.example.com"))),
        ("hop-by-hop headers named in Connection", b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: keep-alive, Keep-Alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n",
            Forwarded(|r| r.header("keep-alive").is_none() && r.header("te").is_none())),
    ];
    let (backend, dp) = setup();
    for (name, request, expect) in cases {
        let seen_before = backend.requests().len();
        let mut conn = HttpConn::connect(dp.http_addr());
        conn.send(request);
        let res = conn.try_read_response();
        let seen = backend.requests();
        match expect {
            Refused(status) => {
                let res = res.unwrap_or_else(|| panic!("{name}: no answer"));
                assert_eq!(res.status, status, "{name}");
                assert_eq!(seen.len(), seen_before, "{name}: forwarded");
            }
            Forwarded(check) => {
                let res = res.unwrap_or_else(|| panic!("{name}: no answer"));
                assert_eq!(res.status, 200, "{name}");
                assert_eq!(seen.len(), seen_before + 1, "{name}");
                assert!(check(seen.last().unwrap()), "{name}: {:?}", seen.last());
            }
        }
    }
}

/// Raises this process's open-file limit (children inherit it) to `want` or the hard
/// limit; returns what it is now.
fn raise_file_limit(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit write and read one plain struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur
    }
}

/// One GET on a raw keep-alive connection; the status, once the whole response (of a
/// content-length body) has been read.
fn get_on(stream: &mut TcpStream) -> u16 {
    use std::io::Read;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return head[9..12].parse().unwrap();
            }
        }
    }
}

#[test]
fn ten_thousand_idle_connections_are_held_while_requests_flow() {
    const IDLE: usize = 10_000;
    let limit = raise_file_limit(3 * IDLE as u64);
    assert!(
        limit >= IDLE as u64 + 2_000,
        "open-file limit {limit} is too low for this test"
    );
    let backend = Backend::text("ok");
    // Default timeouts: idle keep-alive connections stay for 60 s.
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        backend.addr,
    )]);
    let addr = dp.http_addr();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        // One request each: from then on an idle keep-alive connection.
        assert_eq!(get_on(&mut stream), 200, "connection {i}");
        idle.push(stream);
        // New connections keep being served while the idle ones pile up.
        if i % 1000 == 999 {
            assert_eq!(get(addr, "app.example.com", "/").status, 200, "after {i}");
        }
    }
    for _ in 0..20 {
        assert_eq!(get(addr, "app.example.com", "/").status, 200);
    }
    // Every idle connection is still open: each answers a second request.
    for (i, stream) in idle.iter_mut().enumerate() {
        assert_eq!(get_on(stream), 200, "idle connection {i}");
    }
}
