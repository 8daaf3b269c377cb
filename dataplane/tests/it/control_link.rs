//! The control link: tables applied in two phases, refusals, the state cache.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use innergate_table::link::LinkError;
use innergate_table::wire::TableMessage;

use crate::support::*;

#[test]
fn an_invalid_table_is_refused_and_the_old_one_keeps_serving() {
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("v1"),
    )]);
    let refusals = [
        (
            vec![cloud(
                "ep_a",
                "acme",
                "http://app.example.com/path",
                &answer("v2"),
            )],
            "path",
        ),
        (
            vec![cloud(
                "ep_a",
                "acme",
                "http://app.example.com",
                "on_http_request: [",
            )],
            "invalid YAML",
        ),
        (
            vec![cloud("ep_a", "acme", "http://app.example.com", "")],
            "must end every request",
        ),
        (
            vec![
                cloud("ep_a", "acme", "http://app.example.com", &answer("x")),
                cloud("ep_b", "other", "http://app.example.com", &answer("y")),
            ],
            "belongs to another account",
        ),
        (
            vec![agent(
                "ep_a",
                "acme",
                "http://app.example.com",
                "tcp://127.0.0.1:9443",
            )],
            "needs an http:// or https:// upstream",
        ),
    ];
    for (endpoints, reason) in refusals {
        match dp.try_push(endpoints) {
            Err(LinkError::Refused { reason: got, .. }) => {
                assert!(got.contains(reason), "reason `{got}` lacks `{reason}`")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "v1");
    }
    assert_eq!(dp.control().status().unwrap().version, 1);
}

#[test]
fn stale_versions_and_garbage_are_refused() {
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("v1"),
    )]);
    let stale = dp.control().apply(TableMessage {
        authtokens: Vec::new(),
        version: 0,
        endpoints: vec![],
    });
    assert!(matches!(stale, Err(LinkError::Refused { .. })), "{stale:?}");
    // A frame that does not decode gets a refusal, and the link stays usable.
    let mut s = UnixStream::connect(dp.socket()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&[0, 0, 0, 3, 1, 77, 0]).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 3, "a Refused message");
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "v1");
}

#[test]
fn fifty_pushes_under_load_fail_no_request() {
    let backend = Backend::text("up");
    let mut dp = DataPlane::start();
    let base = || {
        vec![
            agent("ep_app", "acme", "http://app.example.com", backend.addr),
            cloud("ep_svc", "acme", "https://svc.internal", &answer("svc")),
            cloud(
                "ep_fwd",
                "acme",
                "http://fwd.example.com",
                &forward_to("https://svc.internal"),
            ),
        ]
    };
    dp.push(base());
    let addr = dp.http_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut conn = HttpConn::connect(addr);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    // Some clients reconnect often, some keep one connection.
                    if i % 2 == 0 && n % 10 == 0 {
                        conn = HttpConn::connect(addr);
                    }
                    let (host, want) = if n % 2 == 0 {
                        ("app.example.com", "up")
                    } else {
                        ("fwd.example.com", "svc")
                    };
                    let res = conn.get(host, "/");
                    if res.status != 200 || res.text() != want {
                        failures.push(format!("{} {}", res.status, res.text()));
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    for i in 0..50 {
        let mut endpoints = base();
        // Every other table adds and drops an endpoint and changes a policy.
        if i % 2 == 0 {
            endpoints.push(cloud(
                &format!("ep_extra{i}"),
                "acme",
                &format!("http://extra{i}.example.com"),
                &answer("x"),
            ));
        }
        let ack = dp.push(endpoints);
        assert_eq!(ack.version, i + 2);
        assert_eq!(
            dp.http_addr(),
            addr,
            "the listener must stay while the port is used"
        );
    }
    // Some requests against the last table too, not only the ones before it.
    let after_pushes = done.load(Ordering::SeqCst);
    eventually("requests after the last push", || {
        done.load(Ordering::SeqCst) >= after_pushes + 8
    });
    stop.store(true, Ordering::SeqCst);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(done.load(Ordering::SeqCst) > 50);
}

#[test]
fn a_restart_without_control_serves_the_saved_table() {
    let backend = Backend::text("saved");
    let mut dp = DataPlane::start();
    dp.push(vec![
        agent("ep_app", "acme", "http://app.example.com", backend.addr),
        cloud(
            "ep_hello",
            "acme",
            "http://hello.example.com",
            &forward_to("https://x.internal"),
        ),
        cloud(
            "ep_x",
            "acme",
            "https://x.internal",
            &answer("Hello world!"),
        ),
    ]);
    dp.restart();
    assert_eq!(dp.ack.version, 1);
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "saved");
    assert_eq!(
        get(dp.http_addr(), "hello.example.com", "/").text(),
        "Hello world!"
    );
    // A corrupt cache is reported and the data plane starts empty, still controllable.
    std::fs::write(dp.state_dir().join("table.bin"), b"garbage").unwrap();
    dp.restart();
    assert_eq!(dp.ack.version, 0);
    assert!(dp.ack.listeners.is_empty());
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("again"),
    )]);
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "again");
}

#[test]
fn listeners_open_and_close_with_the_table() {
    let mut dp = DataPlane::start_with(&["--port-map", "8080=0"]);
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("80"),
    )]);
    let first = dp.http_addr();
    assert_eq!(dp.ack.listeners.len(), 1);
    dp.push(vec![
        cloud("ep_a", "acme", "http://app.example.com", &answer("80")),
        cloud(
            "ep_b",
            "acme",
            "http://app.example.com:8080",
            &answer("8080"),
        ),
    ]);
    assert_eq!(dp.ack.listeners.len(), 2);
    let second: std::net::SocketAddr = dp
        .ack
        .listeners
        .iter()
        .find(|l| l.url_port == 8080)
        .unwrap()
        .local_addr
        .parse()
        .unwrap();
    assert_eq!(get(second, "app.example.com", "/").text(), "8080");
    assert_eq!(get(first, "app.example.com", "/").text(), "80");
    dp.push(vec![cloud(
        "ep_b",
        "acme",
        "http://app.example.com:8080",
        &answer("8080"),
    )]);
    assert_eq!(dp.ack.listeners.len(), 1);
    eventually(
        "port 80's listener to close when no endpoint uses it",
        || std::net::TcpStream::connect(first).is_err(),
    );
    assert_eq!(get(second, "app.example.com", "/").text(), "8080");
}

#[test]
fn a_push_cut_off_midway_leaves_the_served_table_whole() {
    // What the data plane sees when control dies in the middle of sending a table.
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("v1"),
    )]);
    let next = innergate_table::wire::Message::ApplyTable(TableMessage {
        authtokens: Vec::new(),
        version: 2,
        endpoints: vec![cloud(
            "ep_a",
            "acme",
            "http://app.example.com",
            &answer("v2"),
        )],
    });
    let mut frame = Vec::new();
    innergate_table::wire::write_frame(&mut frame, &next).unwrap();
    for cut in [2, 4, 9, frame.len() / 2, frame.len() - 1] {
        let mut link = UnixStream::connect(dp.socket()).unwrap();
        link.write_all(&frame[..cut]).unwrap();
        drop(link);
    }
    // Still the first table, whole.
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "v1");
    assert_eq!(dp.control().status().unwrap().version, 1);
    // The next complete push is applied.
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("v2"),
    )]);
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "v2");
}

#[test]
fn a_state_directory_that_cannot_be_written_refuses_the_table_and_keeps_the_old() {
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("v1"),
    )]);
    // A directory where the temporary file must go: no write succeeds (even as root).
    let blocker = dp.state_dir().join("table.bin.tmp");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let refused = dp.try_push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("v2"),
    )]);
    match refused {
        Err(LinkError::Refused { reason, .. }) => {
            assert!(reason.contains("state directory"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "v1");
    // Once the directory is writable again, tables apply, and a restart serves the
    // last one applied.
    std::fs::remove_dir_all(&blocker).unwrap();
    dp.push(vec![cloud(
        "ep_a",
        "acme",
        "http://app.example.com",
        &answer("v3"),
    )]);
    dp.restart();
    assert_eq!(get(dp.http_addr(), "app.example.com", "/").text(), "v3");
}
