//! Public agent endpoints: HTTP/1.1 forwarding to an upstream (SPEC §3).

use std::io::Read;

use innergate_table::EndpointRecord;

use crate::support::*;

fn proxy_to(backend: &Backend) -> DataPlane {
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        backend.addr,
    )]);
    dp
}

#[test]
fn forwards_with_forwarded_headers_and_intact_target() {
    let backend = Backend::text("hi");
    let dp = proxy_to(&backend);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(
        b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: APP.example.com:8080\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\nConnection: keep-alive, x-hop\r\nX-Custom: kept\r\n\r\n",
    );
    let res = conn.read_response();
    assert_eq!((res.status, res.text().as_str()), (200, "hi"));
    let seen = &backend.requests()[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/a/b?x=1&y=%20");
    assert_eq!(seen.header("host"), Some("APP.example.com:8080"));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.9.9.9, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.example.com"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(seen.header("connection"), None);
}

#[test]
fn bodies_stream_both_ways_in_both_framings() {
    let backend = Backend::echo();
    let dp = proxy_to(&backend);
    let mut conn = HttpConn::connect(dp.http_addr());
    for size in [0usize, 1, 1 << 20] {
        let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        // Content-Length both ways.
        let res = conn.request("POST", "app.example.com", "/cl", &body);
        assert_eq!(res.status, 200);
        assert_eq!(res.body.len(), size);
        assert!(
            res.body == body,
            "content-length body of {size} bytes differs"
        );
        // Chunked both ways, in uneven chunks.
        let mut req = b"POST /chunked HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in body.chunks(33_333) {
            req.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\nx-trailer: t\r\n\r\n");
        conn.send(&req);
        let res = conn.read_response();
        assert_eq!(res.status, 200);
        assert_eq!(res.header("transfer-encoding"), Some("chunked"));
        assert!(res.body == body, "chunked body of {size} bytes differs");
    }
    let seen = backend.requests();
    assert!(seen.iter().any(|r| r.chunked && r.body.len() == 1 << 20));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::start(|r| Some(ok(&r.target)));
    let dp = proxy_to(&backend);
    let mut conn = HttpConn::connect(dp.http_addr());
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(
            format!("GET /{i} HTTP/1.1\r\nHost: app.example.com\r\n\r\n").as_bytes(),
        );
    }
    conn.send(&batch);
    for i in 0..5 {
        assert_eq!(conn.read_response().text(), format!("/{i}"));
    }
}

#[test]
fn upstream_connections_are_kept_alive_and_reused() {
    let backend = Backend::text("ok");
    let dp = proxy_to(&backend);
    for _ in 0..10 {
        let mut conn = HttpConn::connect(dp.http_addr());
        for _ in 0..10 {
            assert_eq!(conn.get("app.example.com", "/").status, 200);
        }
    }
    let requests = backend.requests();
    assert_eq!(requests.len(), 100);
    let used: std::collections::HashSet<_> = requests.iter().map(|r| r.connection).collect();
    assert_eq!(used.len(), backend.connections());
    // Two workers, each with its own pool: far fewer connections than requests.
    assert!(
        backend.connections() <= 4,
        "{} upstream connections",
        backend.connections()
    );
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_retried_for_bodyless_requests() {
    // Answers one request per connection as keep-alive, then closes it silently: the
    // proxy pools it and finds it dead on reuse. It closes once the client has the
    // answer (the proxy is done with the connection and pools it), and the client
    // asks again once it is closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (answered, client_has_it) = std::sync::mpsc::channel::<()>();
    let (closed, upstream_closed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            use std::io::Write;
            let _ = s.write_all(&ok("fresh"));
            if client_has_it.recv_timeout(TIMEOUT).is_err() {
                return;
            }
            drop(s);
            let _ = closed.send(());
        }
    });
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        addr,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..5 {
        let res = conn.get("app.example.com", "/");
        assert_eq!((res.status, res.text().as_str()), (200, "fresh"));
        answered.send(()).unwrap();
        upstream_closed
            .recv_timeout(TIMEOUT)
            .expect("the upstream to close the connection it answered on");
    }
}

#[test]
fn http_1_0_clients_get_close_delimited_answers() {
    let backend = Backend::start(|_| {
        Some(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec())
    });
    let dp = proxy_to(&backend);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET / HTTP/1.0\r\nHost: app.example.com\r\n\r\n");
    let res = conn.read_response();
    assert_eq!(res.status, 200);
    assert_eq!(res.header("transfer-encoding"), None);
    assert_eq!(res.text(), "abcde");
    assert!(conn.is_closed());
}

#[test]
fn http_1_0_keep_alive_is_honoured() {
    let backend = Backend::text("ok");
    let dp = proxy_to(&backend);
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..3 {
        conn.send(b"GET / HTTP/1.0\r\nHost: app.example.com\r\nConnection: keep-alive\r\n\r\n");
        let res = conn.read_response();
        assert_eq!(res.header("connection"), Some("keep-alive"));
        assert_eq!(res.text(), "ok");
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let backend = Backend::echo();
    let dp = proxy_to(&backend);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = conn.read_response();
    assert_eq!(interim.status, 100);
    conn.send(b"hello");
    let res = conn.read_response();
    assert_eq!((res.status, res.text().as_str()), (200, "hello"));
    assert_eq!(backend.requests()[0].header("expect"), None);
}

#[test]
fn upstream_refused_is_502_with_code() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        port,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = conn.get("app.example.com", "/");
    assert_eq!(res.status, 502);
    assert_eq!(res.error_code(), Some("ERR_IG_3004"));
    // The client connection survives an upstream failure.
    assert_eq!(conn.get("app.example.com", "/").status, 502);
}

#[test]
fn upstream_timeout_is_504_with_code() {
    let backend = Backend::start(|_| None);
    let mut dp = DataPlane::start_with(&["--upstream-read-timeout", "500ms"]);
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        backend.addr,
    )]);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.status, 504);
    assert_eq!(res.error_code(), Some("ERR_IG_3005"));
}

#[test]
fn upstream_cannot_forge_the_error_code_header() {
    let backend = Backend::start(|_| {
        Some(
            b"HTTP/1.1 200 OK\r\ninnergate-error-code: ERR_IG_9999\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let dp = proxy_to(&backend);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.status, 200);
    assert_eq!(res.error_code(), None);
}

#[test]
fn a_large_upload_streams_in_bounded_memory() {
    // Count bytes at the backend instead of keeping them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf[..1]).unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let mut total = 0u64;
        const SIZE: u64 = 1 << 30;
        while total < SIZE {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            total += n as u64;
        }
        use std::io::Write;
        s.write_all(&ok(&total.to_string())).unwrap();
        total
    });
    let mut dp = DataPlane::start();
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        addr,
    )]);
    let before = dp.rss_kib();
    let mut conn = HttpConn::connect(dp.http_addr());
    let size: u64 = 1 << 30;
    conn.send(
        format!("POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {size}\r\n\r\n")
            .as_bytes(),
    );
    let chunk = vec![b'x'; 1 << 20];
    let mut peak = before;
    for i in 0..1024 {
        conn.send(&chunk);
        if i % 64 == 0 {
            peak = peak.max(dp.rss_kib());
        }
    }
    let res = conn.read_response();
    assert_eq!(res.text(), size.to_string());
    assert_eq!(counter.join().unwrap(), size);
    peak = peak.max(dp.rss_kib());
    eprintln!("1 GiB upload: RSS {before} KiB before, {peak} KiB at most during");
    assert!(
        peak < before + 8 * 1024,
        "RSS grew from {before} KiB to {peak} KiB for a 1 GiB upload"
    );
}

/// An upstream that accepts a WebSocket upgrade, then echoes raw bytes.
fn upgrade_upstream() -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                let asks =
                    head.contains("upgrade: websocket") && head.contains("connection: upgrade");
                if !asks {
                    let _ =
                        writer.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
                    return;
                }
                let _ = writer.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: test\r\n\r\n",
                );
                let mut buf = [0u8; 4096];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if writer.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn websocket_upgrades_become_tunnels_through_forward_internal() {
    let ws = upgrade_upstream();
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud(
            "ep_public",
            "acme",
            "http://app.example.com",
            &forward_to("https://ws.internal"),
        ),
        agent("ep_ws", "acme", "https://ws.internal", ws),
    ]);
    let mut conn = HttpConn::connect(dp.http_addr());
    // The first frame travels right behind the request, before the 101 arrived.
    conn.send(b"GET /chat HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nframe-1");
    let switched = conn.read_response();
    assert_eq!(switched.status, 101);
    assert_eq!(switched.header("upgrade"), Some("websocket"));
    assert_eq!(switched.header("sec-websocket-accept"), Some("test"));
    let mut stream = conn.into_stream();
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"frame-1");
    // Reads go through the buffer (bytes may already be in it); writes go straight on.
    std::io::Write::write_all(stream.get_mut(), b"frame-2").unwrap();
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"frame-2");
    stream
        .get_ref()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// An upstream that answers every request with `head_and_part` and then closes.
fn truncating_upstream(head_and_part: &'static [u8]) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(head_and_part);
                // Dropped: the connection closes in the middle of the body.
            });
        }
    });
    addr
}

#[test]
fn an_upstream_closing_mid_response_ends_that_client_connection_only() {
    // A small body is read whole before the head goes out: its loss is a clean 502.
    let small = truncating_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly part");
    // A large or chunked body streams: the head is out before the upstream fails.
    let large = truncating_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nonly part");
    let chunked = truncating_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nwo",
    );
    let healthy = Backend::text("still fine");
    let mut dp = DataPlane::start();
    dp.push(vec![
        agent("ep_small", "acme", "http://small.example.com", small),
        agent("ep_large", "acme", "http://large.example.com", large),
        agent("ep_chunked", "acme", "http://chunked.example.com", chunked),
        agent("ep_ok", "acme", "http://ok.example.com", healthy.addr),
    ]);
    let res = get(dp.http_addr(), "small.example.com", "/");
    assert_eq!(res.status, 502);
    assert_eq!(res.error_code(), Some("ERR_IG_3007"));
    for host in ["large.example.com", "chunked.example.com"] {
        let mut conn = HttpConn::connect(dp.http_addr());
        conn.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        // The client sees a response that ends before its framing says it is complete,
        // then the connection closes; never a response that looks whole.
        assert!(
            conn.try_read_response().is_none(),
            "{host}: a truncated response must not read as complete"
        );
        assert!(conn.is_closed(), "{host}: connection left open");
    }
    // Both workers serve on, keep-alive included.
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..3 {
        assert_eq!(conn.get("ok.example.com", "/").text(), "still fine");
    }
    for _ in 0..4 {
        assert_eq!(
            get(dp.http_addr(), "ok.example.com", "/").text(),
            "still fine"
        );
    }
}

#[test]
fn request_bodies_above_an_endpoint_limit_get_413_and_are_not_forwarded() {
    let backend = Backend::echo();
    let mut dp = DataPlane::start();
    let limited = |mut r: EndpointRecord, limit: u64| {
        r.max_request_body = limit;
        r
    };
    dp.push(vec![
        limited(
            agent("ep_app", "acme", "http://app.example.com", backend.addr),
            10,
        ),
        // The limit of an endpoint further down the chain counts too.
        cloud(
            "ep_front",
            "acme",
            "http://front.example.com",
            &forward_to("https://inner.internal"),
        ),
        limited(
            agent("ep_inner", "acme", "https://inner.internal", backend.addr),
            4,
        ),
    ]);
    let addr = dp.http_addr();
    let mut conn = HttpConn::connect(addr);
    assert_eq!(
        conn.request("POST", "app.example.com", "/", b"0123456789")
            .text(),
        "0123456789"
    );
    let res = conn.request("POST", "app.example.com", "/", b"0123456789A");
    assert_eq!(res.status, 413);
    assert_eq!(res.error_code(), Some("ERR_IG_1004"));
    assert_eq!(backend.requests().len(), 1);

    // A chunked body is cut off at the chunk that passes the limit.
    let (res, mut conn) = raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n6789AB\r\n0\r\n\r\n",
    );
    assert_eq!(res.status, 413);
    assert!(conn.is_closed());

    let res = HttpConn::connect(addr).request("POST", "front.example.com", "/", b"12345");
    assert_eq!(res.status, 413);
    let res = HttpConn::connect(addr).request("POST", "front.example.com", "/", b"1234");
    assert_eq!(res.status, 200);
    assert_eq!(backend.requests().len(), 2, "{:?}", backend.requests());
}
