//! The epoll fallback: where io_uring is unavailable the same behaviour holds
//! (listeners and sockets are non-blocking there, a different path through monoio).

use crate::support::*;

#[test]
fn the_epoll_driver_serves_the_same() {
    let backend = Backend::echo();
    let mut dp = DataPlane::start_with_env(
        &["--header-timeout", "1s"],
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
    );
    dp.push(vec![
        agent("ep_app", "acme", "http://app.example.com", backend.addr),
        cloud(
            "ep_svc",
            "acme",
            "https://svc.internal",
            &answer("internal"),
        ),
        cloud(
            "ep_fwd",
            "acme",
            "http://fwd.example.com",
            &forward_to("https://svc.internal"),
        ),
    ]);
    let mut conn = HttpConn::connect(dp.http_addr());
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    let res = conn.request("POST", "app.example.com", "/", &body);
    assert!(res.status == 200 && res.body == body);
    conn.send(b"GET /1 HTTP/1.1\r\nHost: fwd.example.com\r\n\r\nGET /2 HTTP/1.1\r\nHost: fwd.example.com\r\n\r\n");
    assert_eq!(conn.read_response().text(), "internal");
    assert_eq!(conn.read_response().text(), "internal");
    // Timeouts work on this driver too.
    let mut slow = HttpConn::connect(dp.http_addr());
    slow.send(b"GET / HTTP/1.1\r\n");
    // Waits for the close (EOF), up to 5 s, well past the 1 s header timeout.
    assert!(slow.is_closed());
    // A new port opens on a table change.
    let ack = dp.push(vec![cloud(
        "ep_x",
        "acme",
        "http://x.example.com",
        &answer("x"),
    )]);
    assert_eq!(ack.listeners.len(), 1);
    assert_eq!(get(dp.http_addr(), "x.example.com", "/").text(), "x");
}
