//! Shutting down: SIGTERM drains.

use std::time::{Duration, Instant};

use innergate_table::link::ControlClient;

use crate::support::*;

#[test]
fn sigterm_finishes_requests_in_flight_closes_idle_ones_and_exits_0() {
    // The backend holds /slow until the test lets it go, so the request is surely in
    // flight while the data plane drains, however slow the machine.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let backend = Backend::start(move |r| {
        if r.target == "/slow" {
            let _ = held.lock().unwrap().recv_timeout(TIMEOUT);
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
    eventually("the backend to get the slow request", || {
        backend.requests().iter().any(|r| r.target == "/slow")
    });
    let started = Instant::now();
    let signaller = std::thread::spawn(move || dp.signal_and_wait(libc::SIGTERM));
    // The idle keep-alive connection is closed, not left to its idle timeout.
    assert!(idle.is_closed());
    // The request in flight (held by the backend until now) still gets its answer.
    release.send(()).unwrap();
    assert_eq!(busy.read_response().text(), "done");
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

/// Sets a sysctl for the test's time and puts the old value back when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Option<Sysctl> {
        let old = std::fs::read_to_string(path).ok()?;
        if old.trim() == value {
            return Some(Sysctl { path, old });
        }
        std::fs::write(path, value).ok()?;
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

/// Outcome of one load client: requests answered 200, and failures.
#[derive(Default)]
struct LoadCount {
    ok: usize,
    failed: Vec<String>,
}

/// One keep-alive GET on `conn`; `Err(true)` when the server closed a reused
/// connection before answering (a client retries that, RFC 9112 §9.3.1).
fn one_get(
    conn: &mut std::io::BufReader<std::net::TcpStream>,
    reused: bool,
) -> Result<(), (bool, String)> {
    use std::io::{BufRead, Read, Write};
    let stale = |e: String| (reused, e);
    conn.get_mut()
        .write_all(b"GET /up HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .map_err(|e| stale(e.to_string()))?;
    let mut line = String::new();
    match conn.read_line(&mut line) {
        Ok(0) => return Err(stale("closed before a response".into())),
        Ok(_) => {}
        Err(e) => return Err(stale(e.to_string())),
    }
    if !line.starts_with("HTTP/1.1 200") {
        return Err((false, format!("status line {line:?}")));
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        conn.read_line(&mut header)
            .map_err(|e| (false, e.to_string()))?;
        if header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)
        .map_err(|e| (false, e.to_string()))?;
    Ok(())
}

/// Clients that each send keep-alive requests, 20 per connection, until `stop`;
/// `answered` counts the 200s of all clients as they come.
fn load(
    addr: std::net::SocketAddr,
    stop: &std::sync::atomic::AtomicBool,
    answered: &std::sync::atomic::AtomicUsize,
) -> LoadCount {
    use std::sync::atomic::Ordering;
    let mut count = LoadCount::default();
    while !stop.load(Ordering::Relaxed) {
        let stream = match std::net::TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                count.failed.push(format!("connect: {e}"));
                continue;
            }
        };
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = std::io::BufReader::new(stream);
        for i in 0..20 {
            match one_get(&mut conn, i > 0) {
                Ok(()) => {
                    count.ok += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                // A reused connection closed by the draining process: retried on a
                // new one, as clients do.
                Err((true, _)) => break,
                Err((false, e)) => {
                    count.failed.push(e);
                    break;
                }
            }
        }
    }
    count
}

#[test]
fn upgrade_by_a_second_process_fails_no_request_under_load() {
    // Connections still queued on the old process's listeners move to the new one's
    // when it closes them (Linux 5.14+; scripts/tune-host.sh sets it on hosts).
    let Some(_migrate) = Sysctl::set("/proc/sys/net/ipv4/tcp_migrate_req", "1") else {
        panic!(
            "this test needs net.ipv4.tcp_migrate_req=1 (run as root, or run scripts/tune-host.sh)"
        );
    };
    let backend = Backend::text("up");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_map = format!("80={port}");
    let mut old = DataPlane::start_with(&["--port-map", &port_map, "--drain-timeout", "10s"]);
    old.push(vec![agent(
        "ep_app",
        "acme",
        "http://app.example.com",
        backend.addr,
    )]);
    let addr = old.http_addr();
    assert_eq!(addr.port(), port);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let answered_now = || answered.load(std::sync::atomic::Ordering::Relaxed);
    // The new process's admin listener: its /metrics say when it takes connections.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let counts = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let clients: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| load(addr, &stop, &answered)))
            .collect();
        eventually("the old data plane to serve the load", || {
            answered_now() >= 50
        });

        // The new process: same ports, state directory and control socket.
        let log = old.state_dir().with_file_name("new.log");
        let mut new = KillOnDrop::spawn_logged(
            std::process::Command::new(env!("CARGO_BIN_EXE_innergate-dataplane"))
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--workers",
                    "2",
                    "--port-map",
                    &port_map,
                ])
                .arg("--control-socket")
                .arg(old.socket())
                .arg("--state-dir")
                .arg(old.state_dir())
                .arg("--takeover")
                .arg("--admin")
                .arg(admin.to_string())
                .env("RUST_LOG", "info"),
            &log,
        );
        new.eventually("the new data plane to start", || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("control socket at")
        });
        // Both processes' listeners share the ports: the new one takes its part of the
        // load's new connections.
        new.eventually("the new data plane to accept connections", || {
            let metrics = get(admin, "admin", "/metrics").text();
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("innergate_connections_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        });
        // The old one drains and exits; the new one serves on alone.
        let status = old.signal_and_wait(libc::SIGTERM);
        assert!(status.success(), "{status}");
        let before = answered_now();
        eventually("the new data plane to serve the load alone", || {
            answered_now() >= before + 100
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let counts: Vec<LoadCount> = clients.into_iter().map(|c| c.join().unwrap()).collect();

        // Control reaches the new process at the same path, serving the same table.
        let status = ControlClient::connect(&old.socket(), TIMEOUT)
            .unwrap()
            .status()
            .unwrap();
        assert_eq!(status.version, 1);
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .contains("serving saved table"));
        new.kill();
        counts
    });
    let ok: usize = counts.iter().map(|c| c.ok).sum();
    let failed: Vec<&String> = counts.iter().flat_map(|c| &c.failed).collect();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 100, "only {ok} requests");
}
