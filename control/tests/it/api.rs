//! Every route and error of the Endpoints API, through real HTTP.

use innergate::endpoint::{CreateEndpoint, UpdateEndpoint};

use crate::support::*;

#[test]
fn routes_fields_and_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let api = control.client(&control.account("alice"));
    let created = api
        .create(&CreateEndpoint {
            url: "HTTPS://Example.internal".into(),
            traffic_policy: Some(HELLO.into()),
            description: Some("hello".into()),
            metadata: Some("{\"team\":\"a\"}".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(created.id.starts_with("ep_"));
    assert_eq!(created.url, "https://example.internal");
    assert_eq!(created.kind, "cloud");
    assert_eq!(created.bindings, ["internal"]);
    assert_eq!(
        (created.proto.as_str(), created.host.as_str(), created.port),
        ("https", "example.internal", 443)
    );
    assert_eq!(created.uri, format!("/endpoints/{}", created.id));
    assert_eq!(api.get(&created.id).unwrap(), created);

    let agent = api
        .create(&CreateEndpoint {
            url: "http://app.example.com:8080".into(),
            upstream_url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(agent.kind, "agent");
    assert_eq!(agent.upstream_url.as_deref(), Some("http://127.0.0.1:9"));

    let updated = api
        .update(
            &created.id,
            &UpdateEndpoint {
                description: Some("changed".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(updated.description, "changed");
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);

    // Another account sees none of it.
    let bob = control.client(&control.account("bob"));
    assert_eq!(bob.get(&created.id).unwrap_err().status_code, 404);
    assert_eq!(bob.delete(&created.id).unwrap_err().status_code, 404);
    assert!(bob.list(None, None).unwrap().endpoints.is_empty());

    api.delete(&created.id).unwrap();
    let gone = api.get(&created.id).unwrap_err();
    assert_eq!(
        (gone.status_code, gone.error_code.as_str()),
        (404, "ERR_IG_7001")
    );
}

#[test]
fn missing_and_wrong_keys_are_401() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let e = control.client("ig_wrong").list(None, None).unwrap_err();
    assert_eq!((e.status_code, e.error_code.as_str()), (401, "ERR_IG_7000"));
    let raw = ureq::get(&format!("{}/endpoints", control.api)).call();
    match raw {
        Err(ureq::Error::Status(401, r)) => {
            let body: serde_json::Value = r.into_json().unwrap();
            assert_eq!(body["status_code"], 401);
            assert!(body["msg"].as_str().unwrap().contains("Bearer"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_cause_has_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let api = control.client(&control.account("alice"));
    let other = control.client(&control.account("mallory"));
    api.create(&cloud("http://taken.example.com", HELLO))
        .unwrap();
    api.create(&cloud("https://solo.internal", HELLO)).unwrap();
    let pooled = |url: &str| CreateEndpoint {
        pooling_enabled: Some(true),
        ..cloud(url, HELLO)
    };
    let cases: Vec<(CreateEndpoint, u16, &str, &str)> = vec![
        (cloud("http://a.example.com/path", HELLO), 400, "ERR_IG_7100", "path"),
        (
            CreateEndpoint {
                bindings: Some(vec!["public".into()]),
                ..cloud("https://x.internal", HELLO)
            },
            400,
            "ERR_IG_7101",
            "binding",
        ),
        (cloud("http://b.example.com", "on_http_request:\n  - actions:\n      - type: custom-response\n        config: {status_cod: 200}\n"), 400, "ERR_IG_7103", "on_http_request[0].actions[0].config"),
        (cloud("http://c.example.com", "on_http_request: ["), 400, "ERR_IG_7103", "invalid YAML"),
        (pooled("https://solo.internal"), 409, "ERR_IG_7106", "pooling must be enabled"),
        (cloud("http://d.example.com", "on_http_request:\n  - actions:\n      - type: add-headers\n        config: {headers: {a: b}}\n"), 400, "ERR_IG_7109", "must end every request"),
        (cloud("https://e.internal", "on_tcp_connect:\n  - actions: [{type: deny}]\non_http_request:\n  - actions: [{type: deny}]\n"), 400, "ERR_IG_7110", "never run"),
        (
            CreateEndpoint {
                kind: Some("agent".into()),
                ..cloud("http://f.example.com", HELLO)
            },
            400,
            "ERR_IG_7004",
            "upstream_url",
        ),
    ];
    for (body, status, code, words) in cases {
        let e = api.create(&body).unwrap_err();
        assert_eq!(
            (e.status_code, e.error_code.as_str()),
            (status, code),
            "{e}"
        );
        assert!(e.msg.contains(words), "`{}` lacks `{words}`", e.msg);
    }
    let e = other
        .create(&cloud("http://taken.example.com", HELLO))
        .unwrap_err();
    assert_eq!((e.status_code, e.error_code.as_str()), (409, "ERR_IG_7107"));
    // Unknown fields are refused, with the field's name.
    let r = ureq::post(&format!("{}/endpoints", control.api))
        .set(
            "Authorization",
            &format!("Bearer {}", control.account("carol")),
        )
        .send_json(serde_json::json!({"url": "http://g.example.com", "traffic_polcy": HELLO}));
    match r {
        Err(ureq::Error::Status(400, r)) => {
            let body: serde_json::Value = r.into_json().unwrap();
            assert_eq!(body["error_code"], "ERR_IG_7002");
            assert!(
                body["msg"].as_str().unwrap().contains("traffic_polcy"),
                "{body}"
            );
        }
        other => panic!("{other:?}"),
    }
    let e = api.list(Some(101), None).unwrap_err();
    assert_eq!((e.status_code, e.error_code.as_str()), (400, "ERR_IG_7003"));
    // Nothing half-applied: only the two good endpoints exist.
    assert_eq!(api.list(None, None).unwrap().endpoints.len(), 2);
}

#[test]
fn paging_is_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let api = control.client(&control.account("alice"));
    let ids: Vec<String> = (0..7)
        .map(|i| {
            api.create(&cloud(&format!("https://n{i}.internal"), HELLO))
                .unwrap()
                .id
        })
        .collect();
    let mut seen = Vec::new();
    let mut page = api.list(Some(3), None).unwrap();
    loop {
        seen.extend(page.endpoints.iter().map(|e| e.id.clone()));
        let Some(next) = page.next_page_uri.clone() else {
            break;
        };
        let before = next.split("before_id=").nth(1).unwrap().to_string();
        assert_eq!(next, format!("/endpoints?limit=3&before_id={before}"));
        page = api.list(Some(3), Some(&before)).unwrap();
    }
    let newest_first: Vec<String> = ids.into_iter().rev().collect();
    assert_eq!(seen, newest_first);
}

#[test]
fn metrics_count_calls_pushes_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(dir.path());
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let api = control.client(&control.account("alice"));
    api.create(&cloud("http://app.example.com", HELLO)).unwrap();
    assert_eq!(api.get("ep_nope").unwrap_err().status_code, 404);
    let agent = api
        .create(&CreateEndpoint {
            url: "http://agent.example.com".into(),
            upstream_url: Some("http://127.0.0.1:9".into()),
            held_by: Some(innergate::endpoint::HeldBy::Agent),
            ..Default::default()
        })
        .unwrap();
    api.renew_lease(&agent.id).unwrap();
    // A port some other program holds: the data plane refuses the table.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let url = format!("http://busy.example.com:{port}");
    assert_eq!(
        api.create(&cloud(&url, HELLO)).unwrap_err().status_code,
        422
    );

    let addr: std::net::SocketAddr = control.api.trim_start_matches("http://").parse().unwrap();
    let mut body = String::new();
    eventually("gauges updated", || {
        body = get_metrics(addr);
        metric(&body, "innergate_control_endpoints ") == 2
    });
    let count = |line: &str| metric(&body, line);
    assert_eq!(
        count("innergate_control_api_requests_total{route=\"/endpoints\",method=\"POST\",status=\"201\"} "),
        2,
        "{body}"
    );
    assert_eq!(
        count("innergate_control_api_requests_total{route=\"/endpoints/{id}\",method=\"GET\",status=\"404\"} "),
        1,
        "{body}"
    );
    assert_eq!(
        count("innergate_control_api_requests_total{route=\"/endpoints\",method=\"POST\",status=\"422\"} "),
        1,
        "{body}"
    );
    // The two creates, a first sync when the link came up before them, and the
    // table that told the data plane the new account's key (it opens tunnels).
    let applied = count("innergate_control_pushes_total{result=\"applied\"} ");
    assert!((2..=4).contains(&applied), "{body}");
    assert_eq!(
        count("innergate_control_pushes_total{result=\"refused\"} "),
        1,
        "{body}"
    );
    assert_eq!(
        count("innergate_control_lease_renewals_total "),
        1,
        "{body}"
    );
    assert_eq!(count("innergate_control_leases_active "), 1, "{body}");
    // Two creates and the account's key (which opens tunnel sessions too).
    assert_eq!(count("innergate_control_table_version "), 3, "{body}");
    assert_eq!(count("innergate_control_data_plane_in_sync "), 1, "{body}");
}

fn metric(body: &str, line_start: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// `GET /metrics` from control's API listener.
fn get_metrics(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    raw.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn a_request_body_limit_is_kept_shown_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(dir.path());
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let api = control.client(&control.account("alice"));
    let created = api
        .create(&CreateEndpoint {
            url: "http://app.example.com".into(),
            upstream_url: Some(format!("http://{}", backend("hello"))),
            max_request_body_bytes: Some(8),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(created.max_request_body_bytes, 8);
    let addr = dp.http_addr();
    let post = |body: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    };
    // The limit holds for what goes on to the upstream (a policy's own answer would
    // come first: dataplane/tests/it/request_path.rs).
    assert!(post("12345678").starts_with("HTTP/1.1 200"));
    assert!(post("123456789").starts_with("HTTP/1.1 413"));

    let updated = api
        .update(
            &created.id,
            &UpdateEndpoint {
                max_request_body_bytes: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(updated.max_request_body_bytes, 0);
    eventually("the limit lifted", || {
        post("123456789").starts_with("HTTP/1.1 200")
    });

    // A tcp endpoint carries no requests: a limit there is a mistake.
    let e = api
        .create(&CreateEndpoint {
            url: "tcp://127.0.0.1:29999".into(),
            upstream_url: Some("tcp://127.0.0.1:9".into()),
            max_request_body_bytes: Some(8),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.status_code, 400, "{e}");
    assert!(e.msg.contains("max_request_body"), "{e}");
}
