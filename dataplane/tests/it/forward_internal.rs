//! forward-internal: in-memory hand-off to internal endpoints (SPEC §5).

use std::collections::HashSet;

use crate::support::*;

const PUBLIC: &str = "http://app.example.com";

#[test]
fn seed_quickstart_answers_hello_world() {
    // As issue #2 states it: an internal *agent* endpoint whose policy answers, so its
    // upstream is never asked, and a public cloud endpoint forwarding to it.
    let upstream = Backend::text("the upstream must not answer");
    let mut dp = DataPlane::start();
    dp.push(vec![
        with_policy(
            agent(
                "ep_internal",
                "acme",
                "https://example.internal",
                upstream.addr,
            ),
            &answer("Hello world!"),
        ),
        cloud(
            "ep_public",
            "acme",
            PUBLIC,
            &forward_to("https://example.internal"),
        ),
    ]);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!((res.status, res.text().as_str()), (200, "Hello world!"));
    assert!(upstream.requests().is_empty());
}

#[test]
fn internal_agent_upstream_sees_the_public_request() {
    let backend = Backend::text("from upstream");
    let mut dp = DataPlane::start();
    dp.push(vec![
        agent("ep_svc", "acme", "https://svc.internal", backend.addr),
        cloud(
            "ep_public",
            "acme",
            PUBLIC,
            &forward_to("https://svc.internal"),
        ),
    ]);
    let res = get(dp.http_addr(), "app.example.com", "/p/q?r=s");
    assert_eq!((res.status, res.text().as_str()), (200, "from upstream"));
    let seen = &backend.requests()[0];
    assert_eq!(seen.header("host"), Some("app.example.com"));
    assert_eq!(seen.target, "/p/q?r=s");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.example.com"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[test]
fn internal_hosts_are_not_served_on_public_listeners() {
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud(
            "ep_internal",
            "acme",
            "http://example.internal",
            &answer("secret"),
        ),
        cloud("ep_public", "acme", PUBLIC, &answer("public")),
    ]);
    let res = get(dp.http_addr(), "example.internal", "/");
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), Some("ERR_IG_3200"));
    let res = get(dp.http_addr(), "nothing.example.com", "/");
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), Some("ERR_IG_3200"));
}

#[test]
fn accounts_never_see_each_others_internal_endpoints() {
    let (a, b) = (Backend::text("a"), Backend::text("b"));
    let mut dp = DataPlane::start();
    dp.push(vec![
        agent("ep_api_a", "acct-a", "https://api.internal", a.addr),
        agent("ep_api_b", "acct-b", "https://api.internal", b.addr),
        cloud(
            "ep_pub_a",
            "acct-a",
            "http://a.example.com",
            &forward_to("https://api.internal"),
        ),
        cloud(
            "ep_pub_b",
            "acct-b",
            "http://b.example.com",
            &forward_to("https://api.internal"),
        ),
        // acct-c forwards to a URL only other accounts own.
        cloud(
            "ep_pub_c",
            "acct-c",
            "http://c.example.com",
            &forward_to("https://api.internal"),
        ),
    ]);
    for _ in 0..20 {
        assert_eq!(get(dp.http_addr(), "a.example.com", "/").text(), "a");
        assert_eq!(get(dp.http_addr(), "b.example.com", "/").text(), "b");
    }
    let res = get(dp.http_addr(), "c.example.com", "/");
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), Some("ERR_IG_3200"));
    assert_eq!(a.requests().len(), 20);
    assert_eq!(b.requests().len(), 20);
}

#[test]
fn a_pool_spreads_requests_over_every_member() {
    let backends: Vec<Backend> = (0..3).map(|_| Backend::text("ok")).collect();
    let mut endpoints: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            pooled(agent(
                &format!("ep_m{i}"),
                "acme",
                "https://pool.internal",
                b.addr,
            ))
        })
        .collect();
    endpoints.push(cloud(
        "ep_public",
        "acme",
        PUBLIC,
        &forward_to("https://pool.internal"),
    ));
    let mut dp = DataPlane::start();
    dp.push(endpoints);
    let mut conn = HttpConn::connect(dp.http_addr());
    for _ in 0..300 {
        assert_eq!(conn.get("app.example.com", "/").status, 200);
    }
    let counts: Vec<usize> = backends.iter().map(|b| b.requests().len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 300);
    assert!(counts.iter().all(|&c| c > 0), "pool members got {counts:?}");
}

/// A public endpoint forwarding through `hops` internal endpoints to a custom response.
fn chain(hops: usize) -> Vec<innergate_table::EndpointRecord> {
    let mut endpoints = vec![cloud(
        "ep_public",
        "acme",
        PUBLIC,
        &forward_to("https://h1.internal"),
    )];
    for i in 1..hops {
        let next = format!("https://h{}.internal", i + 1);
        endpoints.push(cloud(
            &format!("ep_h{i}"),
            "acme",
            &format!("https://h{i}.internal"),
            &forward_to(&next),
        ));
    }
    endpoints.push(cloud(
        &format!("ep_h{hops}"),
        "acme",
        &format!("https://h{hops}.internal"),
        &answer("end"),
    ));
    endpoints
}

#[test]
fn chains_up_to_ten_hops_work_and_eleven_fail() {
    let mut dp = DataPlane::start();
    for hops in [2, 3, 10] {
        dp.push(chain(hops));
        let res = get(dp.http_addr(), "app.example.com", "/");
        assert_eq!(
            (res.status, res.text().as_str()),
            (200, "end"),
            "{hops} hops"
        );
    }
    dp.push(chain(11));
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.status, 508);
    assert_eq!(res.error_code(), Some("ERR_IG_3203"));
}

#[test]
fn a_loop_is_508() {
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud(
            "ep_public",
            "acme",
            PUBLIC,
            &forward_to("https://a.internal"),
        ),
        cloud(
            "ep_a",
            "acme",
            "https://a.internal",
            &forward_to("https://b.internal"),
        ),
        cloud(
            "ep_b",
            "acme",
            "https://b.internal",
            &forward_to("https://a.internal"),
        ),
    ]);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.status, 508);
    assert_eq!(res.error_code(), Some("ERR_IG_3202"));
}

#[test]
fn missing_targets_halt_or_continue() {
    let mut dp = DataPlane::start();
    let continue_then_answer = "on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: https://gone.internal, on_error: continue}\n      - type: custom-response\n        config: {status_code: 200, body: fallback}\n";
    dp.push(vec![
        cloud(
            "ep_halt",
            "acme",
            "http://halt.example.com",
            &forward_to("https://gone.internal"),
        ),
        cloud(
            "ep_cont",
            "acme",
            "http://cont.example.com",
            continue_then_answer,
        ),
    ]);
    let res = get(dp.http_addr(), "halt.example.com", "/");
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), Some("ERR_IG_3200"));
    let res = get(dp.http_addr(), "cont.example.com", "/");
    assert_eq!((res.status, res.text().as_str()), (200, "fallback"));
}

#[test]
fn wildcard_internal_endpoints_and_public_host_rules() {
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud("ep_wild", "acme", "https://*.svc.internal", &answer("wild")),
        cloud(
            "ep_exact",
            "acme",
            "http://x.api.example.com",
            &forward_to("https://exact.svc.internal"),
        ),
        cloud(
            "ep_deep",
            "acme",
            "http://*.api.example.com",
            &answer("deep-wildcard"),
        ),
        cloud(
            "ep_any",
            "acme",
            "http://*.example.com",
            &answer("wildcard"),
        ),
    ]);
    let addr = dp.http_addr();
    assert_eq!(get(addr, "x.api.example.com", "/").text(), "wild");
    assert_eq!(get(addr, "y.api.example.com", "/").text(), "deep-wildcard");
    assert_eq!(get(addr, "a.b.example.com", "/").text(), "wildcard");
    assert_eq!(get(addr, "example.com", "/").status, 404);
    let seen: HashSet<_> = ["X.API.EXAMPLE.COM", "x.api.example.com."]
        .iter()
        .map(|h| get(addr, h, "/").text())
        .collect();
    assert_eq!(seen, HashSet::from(["wild".to_string()]));
}
