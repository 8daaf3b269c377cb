//! The policy subset of issue #2 on both phases, through forward-internal chains.

use crate::support::*;

#[test]
fn request_phase_actions_edit_what_the_upstream_sees() {
    let backend = Backend::text("ok");
    let policy = "on_http_request:\n  - actions:\n      - type: add-headers\n        config:\n          headers: {x-added: yes, host: rewritten.example.com}\n      - type: remove-headers\n        config:\n          headers: [x-secret]\n";
    let mut dp = DataPlane::start();
    dp.push(vec![with_policy(
        agent("ep_app", "acme", "http://app.example.com", backend.addr),
        policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Secret: 1\r\n\r\n");
    assert_eq!(conn.read_response().status, 200);
    let seen = &backend.requests()[0];
    assert_eq!(seen.header("x-added"), Some("yes"));
    assert_eq!(seen.header("host"), Some("rewritten.example.com"));
    assert_eq!(seen.header("x-secret"), None);
    assert_eq!(
        seen.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .count(),
        1
    );
}

#[test]
fn deny_and_custom_response_end_the_request() {
    let backend = Backend::text("never");
    let deny =
        "on_http_request:\n  - actions:\n      - type: deny\n        config: {status_code: 451}\n";
    let custom = "on_http_request:\n  - actions:\n      - type: custom-response\n        config:\n          status_code: 418\n          headers: {x-teapot: short}\n          body: I am a teapot\n";
    let mut dp = DataPlane::start();
    dp.push(vec![
        with_policy(
            agent("ep_deny", "acme", "http://deny.example.com", backend.addr),
            deny,
        ),
        with_policy(
            agent(
                "ep_custom",
                "acme",
                "http://custom.example.com",
                backend.addr,
            ),
            custom,
        ),
    ]);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = conn.get("deny.example.com", "/");
    assert_eq!(res.status, 451);
    assert_eq!(res.error_code(), Some("ERR_IG_3300"));
    // Keep-alive survives a local answer.
    let res = conn.get("custom.example.com", "/");
    assert_eq!(res.status, 418);
    assert_eq!(res.header("x-teapot"), Some("short"));
    assert_eq!(res.text(), "I am a teapot");
    assert!(backend.requests().is_empty());
}

#[test]
fn response_phases_run_target_first_through_a_two_hop_chain() {
    let backend = Backend::start(|_| {
        Some(
            b"HTTP/1.1 200 OK\r\nx-upstream: 1\r\nx-order: upstream\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    // public -> middle.internal -> svc.internal (agent). Each endpoint appends to
    // x-order on the way back: the target first, then each forwarder outwards.
    let public = "on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: https://middle.internal}\non_http_response:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-order: public}}\n      - type: remove-headers\n        config: {headers: [x-upstream]}\n";
    let middle = "on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: https://svc.internal}\non_http_response:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-order: middle}}\n";
    let internal = "on_http_response:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-order: internal}}\n";
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud("ep_public", "acme", "http://app.example.com", public),
        cloud("ep_middle", "acme", "https://middle.internal", middle),
        with_policy(
            agent("ep_svc", "acme", "https://svc.internal", backend.addr),
            internal,
        ),
    ]);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.status, 200);
    let order: Vec<_> = res
        .headers
        .iter()
        .filter(|(n, _)| n == "x-order")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(order, ["upstream", "internal", "middle", "public"]);
    assert_eq!(res.header("x-upstream"), None);
}

#[test]
fn response_phases_run_over_custom_responses_and_can_replace_upstream_answers() {
    let backend = Backend::text("upstream body");
    let internal = "on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: internal answer}\n";
    let public = "on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: https://answer.internal}\non_http_response:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-seen-by: public}}\n";
    let replace = "on_http_response:\n  - actions:\n      - type: custom-response\n        config: {status_code: 503, body: maintenance}\n";
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud("ep_answer", "acme", "https://answer.internal", internal),
        cloud("ep_public", "acme", "http://app.example.com", public),
        with_policy(
            agent(
                "ep_replace",
                "acme",
                "http://replace.example.com",
                backend.addr,
            ),
            replace,
        ),
    ]);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.text(), "internal answer");
    assert_eq!(res.header("x-seen-by"), Some("public"));
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..2 {
        let res = conn.get("replace.example.com", "/");
        assert_eq!((res.status, res.text().as_str()), (503, "maintenance"));
    }
}
