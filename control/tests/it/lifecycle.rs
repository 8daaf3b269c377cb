//! Persistence, crashes, pushes, refusals and restarts of either process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::support::*;

#[test]
fn state_survives_restarts_and_kill_9_during_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Control::start(dir.path(), None);
    let key = control.account("alice");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0usize));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (api, acked, attempts) = (control.client(&key), acked.clone(), attempts.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    *attempts.lock().unwrap() += 1;
                    match api.create(&cloud(&format!("https://w{w}-{i}.internal"), HELLO)) {
                        Ok(e) => acked.lock().unwrap().push(e.id),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    eventually("some acknowledged creates", || {
        acked.lock().unwrap().len() >= 40
    });
    control.kill();
    for w in writers {
        w.join().unwrap();
    }
    control.spawn();
    let api = control.client(&key);
    let mut present = HashSet::new();
    let mut before: Option<String> = None;
    loop {
        let page = api.list(Some(100), before.as_deref()).unwrap();
        present.extend(page.endpoints.iter().map(|e| e.id.clone()));
        match page.next_page_uri {
            Some(_) => before = page.endpoints.last().map(|e| e.id.clone()),
            None => break,
        }
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.is_subset(&present), "lost acknowledged endpoints");
    // At most the requests in flight at the kill can exist unacknowledged.
    assert!(
        present.len() <= acked.len() + 4,
        "{} present, {} acked",
        present.len(),
        acked.len()
    );
    // A clean restart keeps everything too.
    control.restart();
    assert_eq!(
        control
            .client(&key)
            .list(Some(100), None)
            .unwrap()
            .endpoints
            .len()
            .min(100),
        present.len().min(100)
    );
}

#[test]
fn changes_reach_the_data_plane_and_survive_either_side_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let mut dp = DataPlane::start(dir.path());
    let mut control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let api = control.client(&control.account("alice"));
    api.create(&cloud("https://example.internal", HELLO))
        .unwrap();
    api.create(&cloud(
        "http://app.example.com",
        &forward("https://example.internal"),
    ))
    .unwrap();
    let addr = dp.http_addr();
    assert_eq!(
        http_get(addr, "app.example.com"),
        (200, "Hello world!".into())
    );

    // Control gone: the data plane keeps serving.
    control.kill();
    assert_eq!(
        http_get(addr, "app.example.com"),
        (200, "Hello world!".into())
    );

    // Data plane restarted empty (no cache): control pushes the table again.
    dp.kill();
    std::fs::remove_dir_all(&dp.state).unwrap();
    dp.spawn();
    assert_eq!(dp.version(), 0);
    control.spawn();
    let addr = dp.http_addr();
    eventually("the table re-pushed", || {
        http_get(addr, "app.example.com").1 == "Hello world!"
    });

    // And again while control runs: it notices within a tick or two.
    dp.kill();
    std::fs::remove_dir_all(&dp.state).unwrap();
    dp.spawn();
    let addr = dp.http_addr();
    assert_eq!(
        http_get(addr, "app.example.com"),
        (200, "Hello world!".into())
    );
}

#[test]
fn a_refusal_by_the_data_plane_rolls_the_change_back() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(dir.path());
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let api = control.client(&control.account("alice"));
    api.create(&cloud("http://app.example.com", HELLO)).unwrap();
    // A port some other program holds: the data plane cannot listen there.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let e = api
        .create(&cloud(&format!("http://busy.example.com:{port}"), HELLO))
        .unwrap_err();
    assert_eq!(
        (e.status_code, e.error_code.as_str()),
        (422, "ERR_IG_7200"),
        "{e}"
    );
    assert!(e.msg.contains(&format!("port {port}")), "{}", e.msg);
    let urls: Vec<String> = api
        .list(None, None)
        .unwrap()
        .endpoints
        .into_iter()
        .map(|e| e.url)
        .collect();
    assert_eq!(urls, ["http://app.example.com"]);
    assert_eq!(
        http_get(dp.http_addr(), "app.example.com").1,
        "Hello world!"
    );
}

/// The status of a GET, or `None` when nothing answered.
fn try_status(addr: std::net::SocketAddr, host: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    raw.split(' ').nth(1)?.parse().ok()
}

#[test]
fn a_data_plane_killed_under_load_serves_its_cached_table_and_gets_what_it_missed() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_map = format!("80={port}");
    let mut dp = DataPlane::start_with(dir.path(), &["--port-map", &port_map]);
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let api = control.client(&control.account("alice"));
    api.create(&cloud("http://app.example.com", HELLO)).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(http_get(addr, "app.example.com").1, "Hello world!");

    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let wrong = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match try_status(addr, "app.example.com") {
                        Some(200) => answered.fetch_add(1, Ordering::Relaxed),
                        // Refused while the process is down; never a wrong answer.
                        None => 0,
                        Some(_) => wrong.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        eventually("the load to be served", || {
            answered.load(Ordering::Relaxed) >= 20
        });
        dp.kill();
        // A change while the data plane is down: committed, pushed when it is back.
        api.create(&cloud("http://new.example.com", HELLO)).unwrap();
        let before = answered.load(Ordering::Relaxed);
        dp.spawn();
        // The cached table is served as soon as the process is up.
        assert_eq!(http_get(addr, "app.example.com").0, 200);
        eventually("control re-pushes the change the data plane missed", || {
            try_status(addr, "new.example.com") == Some(200)
        });
        eventually("the load is served again", || {
            answered.load(Ordering::Relaxed) > before + 20
        });
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
}
