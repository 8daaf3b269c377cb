//! Shutting down: SIGTERM drains.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn sigterm_finishes_requests_in_flight_closes_idle_ones_and_exits_0() {
    let backend = Backend::start(|r| {
        if r.target == "/slow" {
            std::thread::sleep(Duration::from_millis(800));
        }
        Some(ok("done"))
    });
    let mut dp = DataPlane::start_with(&["--drain-timeout", "10s"]);
    dp.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        backend.addr,
    )]);
    let addr = dp.http_addr();
    let mut idle = HttpConn::connect(addr);
    assert_eq!(idle.get("app.example.com", "/").text(), "done");
    let mut busy = HttpConn::connect(addr);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let signaller = std::thread::spawn(move || dp.signal_and_wait(libc::SIGTERM));
    // The request in flight still gets its answer.
    assert_eq!(busy.read_response().text(), "done");
    // The idle keep-alive connection is closed, not left to its idle timeout.
    assert!(idle.is_closed());
    let status = signaller.join().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
}
