//! Rules with expressions, `${…}` interpolation, vars and dynamic forward targets.

use crate::support::*;

#[test]
fn rules_run_only_when_their_expressions_hold() {
    let backend = Backend::text("upstream");
    let policy = r#"
on_http_request:
  - name: admin is private
    expressions:
      - "req.url.path.startsWith('/admin')"
      - "!('x-admin-token' in req.headers) || req.headers['x-admin-token'][0] != 'letmein'"
    actions:
      - type: deny
        config: {status_code: 401}
  - expressions: ["req.method == 'DELETE'"]
    actions:
      - type: custom-response
        config: {status_code: 405, body: "no ${req.method} on ${req.url.path}"}
  - expressions: ["req.url.query_params['debug'][0] == '1'"]
    actions:
      - type: add-headers
        config: {headers: {x-debug: "client ${conn.client_ip} via ${endpoint.url}"}}
on_http_response:
  - expressions: ["res.status_code == 200 && req.url.path == '/tagged'"]
    actions:
      - type: add-headers
        config: {headers: {x-tagged: "${res.headers['content-length'][0]} bytes"}}
"#;
    let mut dp = DataPlane::start();
    dp.push(vec![with_policy(
        agent("ep_app", "acme", "http://app.example.com", backend.addr),
        policy,
    )]);
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(conn.get("app.example.com", "/admin/x").status, 401);
    conn.send(b"GET /admin/x HTTP/1.1\r\nHost: app.example.com\r\nX-Admin-Token: letmein\r\n\r\n");
    assert_eq!(conn.read_response().text(), "upstream");
    let res = conn.request("DELETE", "app.example.com", "/things/1", b"");
    assert_eq!(
        (res.status, res.text().as_str()),
        (405, "no DELETE on /things/1")
    );
    assert_eq!(conn.get("app.example.com", "/x?debug=1").status, 200);
    let seen = backend.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        last.header("x-debug"),
        Some("client 127.0.0.1 via http://app.example.com")
    );
    assert_eq!(seen[0].header("x-debug"), None);
    assert_eq!(
        conn.get("app.example.com", "/tagged").header("x-tagged"),
        Some("8 bytes")
    );
    assert_eq!(
        conn.get("app.example.com", "/untagged").header("x-tagged"),
        None
    );
}

#[test]
fn dynamic_targets_stay_in_the_account() {
    let (billing, other) = (Backend::text("billing"), Backend::text("other account"));
    let router = r#"
on_http_request:
  - expressions: ["has(req.headers.x_service) || 'x-service' in req.headers"]
    actions:
      - type: forward-internal
        config:
          url: "https://${req.headers['x-service'][0]}.internal"
          on_error: continue
      - type: custom-response
        config:
          status_code: 502
          body: "${actions.forward_internal.error.code}: ${actions.forward_internal.error.message}"
  - actions:
      - type: custom-response
        config: {status_code: 400, body: "say which service"}
"#;
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud("ep_router", "acme", "http://app.example.com", router),
        agent(
            "ep_billing",
            "acme",
            "https://billing.internal",
            billing.addr,
        ),
        agent(
            "ep_foreign",
            "other",
            "https://payroll.internal",
            other.addr,
        ),
    ]);
    let mut conn = HttpConn::connect(dp.http_addr());
    let mut ask = |service: &str| {
        conn.send(
            format!("GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Service: {service}\r\n\r\n")
                .as_bytes(),
        );
        let res = conn.read_response();
        (res.status, res.text())
    };
    assert_eq!(ask("billing"), (200, "billing".into()));
    // Another account's internal endpoint does not exist for this one.
    assert_eq!(
        ask("payroll"),
        (
            502,
            "ERR_IG_3200: endpoint is offline: forward-internal target not found".into()
        )
    );
    // A header cannot steer the target out of .internal.
    assert_eq!(
        ask("evil.com/"),
        (
            502,
            "ERR_IG_3204: forward-internal url is not an internal URL".into()
        )
    );
    assert_eq!(
        get(dp.http_addr(), "app.example.com", "/").text(),
        "say which service"
    );
    assert!(other.requests().is_empty());
}

#[test]
fn vars_carry_across_rules_and_hops() {
    let public = r#"
on_http_request:
  - actions:
      - type: set-vars
        config: {vars: {tier: "${req.headers['x-tier'][0]}"}}
  - expressions: ["vars.tier == 'gold'"]
    actions:
      - type: forward-internal
        config: {url: "https://gold.internal"}
  - actions:
      - type: custom-response
        config: {body: "standard for ${has(vars.tier) ? vars.tier : 'nobody'}"}
"#;
    let gold = r#"
on_http_request:
  - actions:
      - type: custom-response
        config: {body: "gold lane (${vars.tier}) at ${endpoint.host}"}
"#;
    let mut dp = DataPlane::start();
    dp.push(vec![
        cloud("ep_public", "acme", "http://app.example.com", public),
        cloud("ep_gold", "acme", "https://gold.internal", gold),
    ]);
    let mut conn = HttpConn::connect(dp.http_addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Tier: gold\r\n\r\n");
    assert_eq!(
        conn.read_response().text(),
        "gold lane (gold) at gold.internal"
    );
    conn.send(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Tier: silver\r\n\r\n");
    assert_eq!(conn.read_response().text(), "standard for silver");
    // Without the header the set-vars value cannot render its expression: empty.
    assert_eq!(conn.get("app.example.com", "/").text(), "standard for ");
}
