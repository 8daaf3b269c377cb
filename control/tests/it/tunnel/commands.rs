//! The hosted service's `tunnel_sessions` API: the account's live sessions as the
//! data plane holds them, and the commands it sends their agents over the session
//! (stop, restart, update), answered by innergate's agent and by the Rust SDK.

use innergate::tunnel_sessions::TunnelSessionView;

use super::*;

/// The account's sessions, sorted by id.
fn sessions(gw: &Gateway, key: &str) -> Vec<TunnelSessionView> {
    let mut list = gw
        .control
        .client(key)
        .list_tunnel_sessions()
        .expect("GET /tunnel_sessions")
        .tunnel_sessions;
    list.sort_by(|a, b| a.id.cmp(&b.id));
    list
}

fn command(gw: &Gateway, id: &str, command: &str, body: serde_json::Value) -> Result<(), String> {
    gw.control
        .client(&gw.key)
        .tunnel_session_command(id, command, &body)
        .map_err(|e| format!("{} {}: {}", e.status_code, e.error_code, e.msg))
}

#[test]
fn the_api_lists_sessions_and_its_commands_update_restart_and_stop_the_agent() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "up"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let mut agent = gw.agent("http", WEB, "https://web.internal", &[]);
    let http = gw.dp.http_addr();
    assert_eq!(http_get(http, "app.example.com"), (200, "up".to_string()));

    // One session per data plane worker (2), each showing what the agent said of
    // itself, where it connects from, its credential and the endpoint it binds.
    let before = eventually_some("a session on every worker", || {
        let list = sessions(&gw, &gw.key);
        (list.len() == 2 && list.iter().all(|s| !s.endpoints.is_empty())).then_some(list)
    });
    let endpoint = before[0].endpoints[0].id.clone();
    for s in &before {
        assert_eq!(s.client_type, "innergate");
        assert_eq!(s.ip, gw.ns.peer_addr().to_string());
        assert!(!s.credential.id.is_empty(), "the credential is named");
        assert_eq!(
            s.endpoints[0].id, endpoint,
            "both sessions bind one endpoint"
        );
        assert!(s.started_at.ends_with('Z'), "{}", s.started_at);
    }
    let one = gw
        .control
        .client(&gw.key)
        .get_tunnel_session(&before[0].id)
        .unwrap();
    assert_eq!(one, before[0]);

    // Another account sees none of them and cannot command them.
    let other = gw.control.account("globex");
    assert!(sessions(&gw, &other).is_empty());
    let err = gw
        .control
        .client(&other)
        .tunnel_session_command(&before[0].id, "stop", &serde_json::json!({}))
        .unwrap_err();
    assert_eq!(err.status_code, 404, "{err}");
    let err = command(&gw, "ses_nonexistent", "restart", serde_json::json!({})).unwrap_err();
    assert!(err.starts_with("404 ERR_IG_7008"), "{err}");
    let err = command(&gw, &before[0].id, "explode", serde_json::json!({})).unwrap_err();
    assert!(err.starts_with("400"), "{err}");

    // Update: the agent answers that it does not update itself; the API says so.
    let err = command(
        &gw,
        &before[0].id,
        "update",
        serde_json::json!({"version": "9.9.9", "permit_major_version": true}),
    )
    .unwrap_err();
    assert!(err.starts_with("409 ERR_IG_7009"), "{err}");
    assert!(err.contains("does not update itself"), "{err}");
    assert!(
        err.contains("9.9.9"),
        "the agent got the version asked for: {err}"
    );

    // Restart: new sessions, the same endpoint, serving.
    command(&gw, &before[0].id, "restart", serde_json::json!({})).unwrap();
    let after = eventually_some("the restarted agent's sessions", || {
        let list = sessions(&gw, &gw.key);
        let fresh = list.iter().all(|s| before.iter().all(|b| b.id != s.id));
        (fresh && list.len() == 2 && list.iter().all(|s| !s.endpoints.is_empty())).then_some(list)
    });
    assert!(after.iter().all(|s| s.endpoints[0].id == endpoint));
    assert_eq!(http_get(http, "app.example.com"), (200, "up".to_string()));

    // Stop: the agent exits by itself, cleanly, and its endpoint goes offline.
    command(&gw, &after[1].id, "stop", serde_json::Value::Null).unwrap();
    let status = eventually_some("the agent to exit", || {
        agent.0.as_mut().unwrap().try_wait().unwrap()
    });
    assert!(status.success(), "the agent exits 0 on stop: {status}");
    eventually("the stopped agent's endpoint to go offline", || {
        http_get(http, "app.example.com").0 == 404
    });
    assert!(sessions(&gw, &gw.key).is_empty());
}

#[test]
fn a_foreign_sdk_gets_the_command_and_its_answer_is_passed_on() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "sdk"]);
    let _sdk = sdks::sdk(
        &gw,
        sdks::rust_agent(),
        &[format!(
            "https,https://web.internal,http://127.0.0.1:{WEB},internal"
        )],
    );
    let list = eventually_some("the SDK's session", || {
        let list = sessions(&gw, &gw.key);
        (!list.is_empty()).then_some(list)
    });
    assert_eq!(list.len(), 1, "an SDK opens one session");
    // The SDK's agent registers no handler: the SDK itself answers that it has none
    // for the command, which the API reports; the session goes on.
    let err = command(&gw, &list[0].id, "stop", serde_json::json!({})).unwrap_err();
    assert!(err.starts_with("409 ERR_IG_7009"), "{err}");
    assert!(err.contains("no defined callback"), "{err}");
    assert_eq!(sessions(&gw, &gw.key), list);
}
