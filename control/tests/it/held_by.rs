//! Who holds an endpoint decides how long it lives: one made through the API lives
//! until deleted, one an agent holds lives on its lease (SPEC §1).

use innergate::endpoint::{CreateEndpoint, HeldBy};

use crate::support::*;

fn with_upstream(url: &str, held_by: Option<HeldBy>) -> CreateEndpoint {
    CreateEndpoint {
        url: url.into(),
        upstream_url: Some("http://127.0.0.1:9".into()),
        held_by,
        ..Default::default()
    }
}

#[test]
fn an_api_endpoint_with_an_upstream_outlives_leases_and_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start_with_lease(dir.path(), None, "1s");
    let api = control.client(&control.account("alice"));
    // Created first: were it leased, its lease would run out before the agent's.
    let fixed = api
        .create(&with_upstream("http://static.example.com", None))
        .unwrap();
    assert_eq!((fixed.kind.as_str(), fixed.held_by), ("agent", HeldBy::Api));
    let cloud = api.create(&cloud("https://c.internal", HELLO)).unwrap();
    assert_eq!(cloud.held_by, HeldBy::Api);
    let held = api
        .create(&with_upstream(
            "http://held.example.com",
            Some(HeldBy::Agent),
        ))
        .unwrap();
    assert_eq!(held.held_by, HeldBy::Agent);
    assert_eq!(api.get(&held.id).unwrap().held_by, HeldBy::Agent);

    // Only the agent-held one renews.
    api.renew_lease(&held.id).unwrap();
    for id in [&fixed.id, &cloud.id] {
        let e = api.renew_lease(id).unwrap_err();
        assert_eq!((e.status_code, e.error_code.as_str()), (400, "ERR_IG_7005"));
        assert!(
            e.msg.contains("held by api") && e.msg.contains("until deleted"),
            "{e}"
        );
    }

    // Two agent leases run out, one after the other: expiry ran, and the static
    // endpoints are still there, by id and in the list.
    eventually("the agent-held endpoint to expire", || {
        api.get(&held.id).is_err_and(|e| e.status_code == 404)
    });
    let later = api
        .create(&with_upstream(
            "http://later.example.com",
            Some(HeldBy::Agent),
        ))
        .unwrap();
    eventually("the second agent-held endpoint to expire", || {
        api.get(&later.id).is_err_and(|e| e.status_code == 404)
    });
    assert!(
        control
            .metric("innergate_control_lease_expiries_total")
            .unwrap_or(0)
            >= 2
    );
    assert_eq!(api.get(&fixed.id).unwrap(), fixed);
    let listed: Vec<String> = api
        .list(None, None)
        .unwrap()
        .endpoints
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, [cloud.id.clone(), fixed.id.clone()]);

    // Deleting is what ends it.
    api.delete(&fixed.id).unwrap();
    assert_eq!(api.get(&fixed.id).unwrap_err().status_code, 404);
}

#[test]
fn after_a_restart_only_agent_held_endpoints_get_a_lease() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Control::start_with_lease(dir.path(), None, "3s");
    let key = control.account("alice");
    let api = control.client(&key);
    let fixed = api
        .create(&with_upstream("http://static.example.com", None))
        .unwrap();
    let held = api
        .create(&with_upstream(
            "http://held.example.com",
            Some(HeldBy::Agent),
        ))
        .unwrap();
    control.restart();
    // Both got a lease at start had the static one been leased: they would expire
    // together.
    let api = control.client(&key);
    eventually(
        "the agent-held endpoint to expire after the restart",
        || api.get(&held.id).is_err_and(|e| e.status_code == 404),
    );
    assert_eq!(api.get(&fixed.id).unwrap(), fixed);
}

#[test]
fn held_by_in_a_create_body_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let key = control.account("alice");
    let api = control.client(&key);
    let cases = [
        (
            with_upstream("http://t.example.com", Some(HeldBy::Tunnel)),
            "ERR_IG_7002",
            "reserved",
        ),
        (
            CreateEndpoint {
                held_by: Some(HeldBy::Agent),
                ..cloud("http://a.example.com", HELLO)
            },
            "ERR_IG_7004",
            "upstream_url",
        ),
    ];
    for (body, code, words) in cases {
        let e = api.create(&body).unwrap_err();
        assert_eq!((e.status_code, e.error_code.as_str()), (400, code), "{e}");
        assert!(e.msg.contains(words), "`{}` lacks `{words}`", e.msg);
    }
    let r = ureq::post(&format!("{}/endpoints", control.api))
        .set("Authorization", &format!("Bearer {key}"))
        .send_json(serde_json::json!({
            "url": "http://b.example.com",
            "upstream_url": "http://127.0.0.1:9",
            "held_by": "someone",
        }));
    match r {
        Err(ureq::Error::Status(400, r)) => {
            let body: serde_json::Value = r.into_json().unwrap();
            assert_eq!(body["error_code"], "ERR_IG_7002");
            assert!(body["msg"].as_str().unwrap().contains("someone"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was made, and held_by is not something a PATCH changes.
    assert!(api.list(None, None).unwrap().endpoints.is_empty());
    let fixed = api
        .create(&with_upstream("http://c.example.com", None))
        .unwrap();
    let r = ureq::patch(&format!("{}/endpoints/{}", control.api, fixed.id))
        .set("Authorization", &format!("Bearer {key}"))
        .send_json(serde_json::json!({"held_by": "agent"}));
    assert!(matches!(r, Err(ureq::Error::Status(400, _))), "{r:?}");
}

#[test]
fn the_cli_shows_who_holds_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let key = control.account("alice");
    let out = run(&[
        "api",
        "endpoints",
        "create",
        "--url",
        "http://app.example.com",
        "--upstream-url",
        "http://127.0.0.1:9",
        "--api-url",
        &control.api,
        "--api-key",
        &key,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("\nheld by         api\n"), "{shown}");
}
