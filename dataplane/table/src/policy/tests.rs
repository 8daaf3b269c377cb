use super::*;
use crate::endpoint::{Binding, EndpointKind, Upstream};
use crate::policy::actions::set_vars;
use crate::url::{EndpointUrl, Scheme};

fn parse_err(text: &str) -> PolicyError {
    Policy::parse(text).unwrap_err()
}

fn check(url: &str, kind: EndpointKind, text: &str) -> Result<(), PolicyError> {
    let url = EndpointUrl::parse(url).unwrap();
    let binding = Binding::resolve(&url, None).unwrap();
    Policy::parse(text).unwrap().validate_for(Carrier {
        url: &url,
        internal: binding == Binding::Internal,
        has_upstream: matches!(kind, EndpointKind::Agent { .. }),
    })
}

fn agent() -> EndpointKind {
    EndpointKind::Agent {
        upstream: Upstream::parse("8080", Scheme::Http).unwrap(),
    }
}

#[derive(Default)]
struct Headers(Vec<(String, String)>);

impl actions::HeadersMut for Headers {
    fn append(&mut self, name: &str, value: &str) {
        self.0.push((name.into(), value.into()));
    }
    fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.0.len() != before
    }
}

/// An exchange over a header list; expressions read the method and the headers.
#[derive(Default)]
struct Fake {
    headers: Headers,
    vars: Vec<(String, serde_json::Value)>,
    admitted: Vec<Vec<u8>>,
    results: results::ActionResults,
}

impl expr::Facts for Fake {
    fn string(&self, var: expr::Var) -> &str {
        match var {
            expr::Var::Method => "GET",
            _ => "",
        }
    }
    fn int(&self, _: expr::Var) -> i64 {
        0
    }
    fn count(&self, _: expr::MapVar, key: &str) -> usize {
        self.headers
            .0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(key))
            .count()
    }
    fn value(&self, _: expr::MapVar, key: &str, index: usize) -> Option<&str> {
        let mut values = self
            .headers
            .0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(key));
        values.nth(index).map(|(_, v)| v.as_str())
    }
    fn map_size(&self, _: expr::MapVar) -> usize {
        self.headers.0.len()
    }
    fn user_var(&self, name: &str) -> Option<&serde_json::Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
    fn results(&self) -> &results::ActionResults {
        &self.results
    }
}

impl actions::Exchange for Fake {
    fn facts(&self) -> &dyn expr::Facts {
        self
    }
    fn headers(&mut self) -> &mut dyn actions::HeadersMut {
        &mut self.headers
    }
    fn set_var(&mut self, name: &str, value: serde_json::Value) {
        self.vars.push((name.into(), value));
    }
    fn set_target(&mut self, _: &str) {}
    fn log(&mut self, _: String) {}
    /// One request per key; a second one waits 7 s.
    fn admit(&mut self, key: &[u8]) -> Result<(), u64> {
        if self.admitted.iter().any(|k| k == key) {
            return Err(7);
        }
        self.admitted.push(key.to_vec());
        Ok(())
    }
    fn terminate_tls(&mut self) {}
    fn results(&mut self) -> Option<&mut results::ActionResults> {
        Some(&mut self.results)
    }
}

const SEED: &str = r#"
on_http_request:
  - actions:
      - type: custom-response
        config:
          status_code: 200
          body: Hello world!
"#;

#[test]
fn yaml_and_json_give_the_same_model() {
    let yaml = Policy::parse(SEED).unwrap();
    let json = Policy::parse(
        r#"{"on_http_request":[{"actions":[{"type":"custom-response",
            "config":{"status_code":200,"body":"Hello world!"}}]}]}"#,
    )
    .unwrap();
    assert_eq!(yaml, json);
    assert_eq!(Policy::parse("  ").unwrap(), Policy::default());
}

#[test]
fn yaml_scalars_stay_the_text_users_wrote() {
    let p = Policy::parse(
        "on_http_request:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-a: yes, x-b: 80}}\n      - type: custom-response\n        config: {body: 404}\n",
    )
    .unwrap();
    let Action::AddHeaders(add) = &p.on_http_request[0].actions[0] else {
        panic!()
    };
    let values: Vec<_> = add
        .headers
        .iter()
        .map(|(n, t)| (n.as_str(), t.source()))
        .collect();
    assert_eq!(values, [("x-a", "yes"), ("x-b", "80")]);
    let Action::CustomResponse(custom) = &p.on_http_request[0].actions[1] else {
        panic!()
    };
    assert_eq!(custom.body.source(), "404");
}

#[test]
fn errors_name_their_path() {
    let e = parse_err("on_http_requets: []");
    assert_eq!(e.path, "on_http_requets");
    let e = parse_err(
        "on_http_request:\n  - actions:\n      - type: deny\n        config:\n          status_cod: 401\n",
    );
    assert_eq!(e.path, "on_http_request[0].actions[0].config.status_cod");
    assert!(e.message.contains("expected `status_code`"), "{e}");
    let e = parse_err("on_http_request:\n  - actions:\n      - type: denyy\n");
    assert_eq!(e.path, "on_http_request[0].actions[0].type");
    assert!(e.message.contains("known types"), "{e}");
    let e = parse_err("on_http_request:\n  - actoins: []\n");
    assert_eq!(e.path, "on_http_request[0].actoins");
    let e = parse_err("on_http_request:\n  - actions: []\n");
    assert_eq!(e.path, "on_http_request[0].actions");
    let e = parse_err("on_http_request: [\n");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    let e = parse_err("{\"on_http_request\": [}");
    assert!(e.message.contains("line 1"), "{e}");
}

#[test]
fn action_configs_are_checked() {
    let e = parse_err("on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: https://a.example.com}\n");
    assert!(e.message.contains("not internal"), "{e}");
    let e = parse_err(
        "on_http_request:\n  - actions:\n      - type: deny\n        config: {status_code: 99}\n",
    );
    assert!(e.message.contains("out of range"), "{e}");
    let e = parse_err("on_http_request:\n  - actions:\n      - type: add-headers\n        config: {headers: {\"bad name\": x}}\n");
    assert!(e.message.contains("not a valid header name"), "{e}");
    let e = parse_err("on_http_request:\n  - actions:\n      - type: custom-response\n        config: {headers: {content-length: 3}}\n");
    assert!(e.message.contains("content-length"), "{e}");
}

#[test]
fn validation_against_the_endpoint() {
    check("https://a.internal", agent(), SEED).unwrap();
    let tcp_connect = "on_tcp_connect:\n  - actions: [{type: deny}]\n";
    let e = check("https://a.internal", agent(), tcp_connect).unwrap_err();
    assert!(e.message.contains("would never run"), "{e}");
    check("http://a.example.com", agent(), tcp_connect).unwrap();
    let e = check("tcp://a.example.com:5000", agent(), SEED).unwrap_err();
    assert!(e.message.contains("only have on_tcp_connect"), "{e}");
    let e = check(
        "http://a.example.com",
        agent(),
        "on_http_response:\n  - actions: [{type: deny}]\n",
    )
    .unwrap_err();
    assert!(e.message.contains("cannot run in on_http_response"), "{e}");
    let e = check(
        "http://a.example.com",
        agent(),
        "on_http_request:\n  - actions: [{type: deny}, {type: add-headers, config: {headers: {a: b}}}]\n",
    )
    .unwrap_err();
    assert_eq!(e.path, "on_http_request[0].actions[1]");
    assert!(e.message.contains("unreachable"), "{e}");
    let e = check(
        "http://a.example.com",
        agent(),
        "on_http_request:\n  - actions: [{type: forward-internal, config: {url: 'tcp://db.internal:5432'}}]\n",
    )
    .unwrap_err();
    assert!(e.message.contains("within http/https"), "{e}");
    assert_eq!(e.kind, PolicyErrorKind::Invalid);
    let tls_only = "on_tcp_connect:\n  - actions: [{type: terminate-tls}]\n";
    let e = check("tcp://a.example.com:5000", agent(), tls_only).unwrap_err();
    assert!(
        e.message
            .contains("terminate-tls ends TLS on tls and https endpoints"),
        "{e}"
    );
    let e = check("http://a.example.com", agent(), tls_only).unwrap_err();
    assert!(e.message.contains("a http endpoint has none"), "{e}");
    check("tls://a.example.com", agent(), tls_only).unwrap();
    // On https it shapes the handshake the data plane does anyway (the hosted
    // service's mutual TLS example is an https endpoint).
    check("https://a.example.com", agent(), tls_only).unwrap();
    let e = parse_err(
        "on_tcp_connect:\n  - actions: [{type: terminate-tls, config: {min_version: '1.1'}}]\n",
    );
    assert!(e.message.contains("1.1"), "{e}");
}

#[test]
fn cloud_endpoints_must_end_every_request() {
    check("http://a.example.com", EndpointKind::Cloud, SEED).unwrap();
    let e = check("http://a.example.com", EndpointKind::Cloud, "").unwrap_err();
    assert!(e.message.contains("must end every request"), "{e}");
    let continues = "on_http_request:\n  - actions: [{type: forward-internal, config: {url: a.internal, on_error: continue}}]\n";
    check("http://a.example.com", EndpointKind::Cloud, continues).unwrap_err();
    let halts =
        "on_http_request:\n  - actions: [{type: forward-internal, config: {url: a.internal}}]\n";
    check("http://a.example.com", EndpointKind::Cloud, halts).unwrap();
    let e = check("tcp://a.example.com:5000", EndpointKind::Cloud, "").unwrap_err();
    assert!(e.message.contains("every connection"), "{e}");
}

#[test]
fn actions_execute_in_an_exchange() {
    let p = Policy::parse(
        "on_http_request:\n  - actions:\n      - type: set-vars\n        config: {vars: {who: '${req.headers[\"x-user\"][0]}'}}\n      - type: add-headers\n        config: {headers: {x-a: '${req.method}-${vars.who}', Host: new.example.com}}\n      - type: remove-headers\n        config: {headers: [X-Drop]}\n",
    )
    .unwrap();
    let mut x = Fake {
        headers: Headers(vec![
            ("host".into(), "old.example.com".into()),
            ("x-drop".into(), "1".into()),
            ("x-user".into(), "ann\r\nx-evil: 1".into()),
        ]),
        ..Fake::default()
    };
    for action in &p.on_http_request[0].actions {
        assert!(matches!(action.execute(&mut x), Verdict::Continue));
    }
    assert_eq!(
        x.headers.0,
        vec![
            ("x-user".to_string(), "ann\r\nx-evil: 1".to_string()),
            ("x-a".to_string(), "GET-annx-evil: 1".to_string()),
            ("Host".to_string(), "new.example.com".to_string())
        ],
        "interpolated values lose CR and LF"
    );
    let deny = Policy::parse(
        "on_http_request:\n  - actions: [{type: deny, config: {status_code: 451}}]\n",
    )
    .unwrap();
    let Verdict::Respond(denied) = deny.on_http_request[0].actions[0].execute(&mut x) else {
        panic!("deny answers");
    };
    assert_eq!(denied.status, 451);
    assert_eq!(denied.error_code(), Some("ERR_IG_3300"));
}

#[test]
fn refusing_actions_make_their_own_answers() {
    let mut x = Fake {
        headers: Headers(vec![("x-user".into(), "ann".into())]),
        ..Fake::default()
    };
    let limit = Policy::parse(
        "on_http_request:\n  - actions: [{type: rate-limit, config: {capacity: 1, rate: 60s, bucket_key: ['req.headers[\"x-user\"][0]']}}]\n",
    )
    .unwrap();
    let action = &limit.on_http_request[0].actions[0];
    assert!(matches!(action.execute(&mut x), Verdict::Continue));
    let Verdict::Respond(limited) = action.execute(&mut x) else {
        panic!("the second request of the key is refused");
    };
    assert_eq!(limited.status, 429);
    assert_eq!(limited.error_code(), Some("ERR_IG_3303"));
    assert!(limited
        .headers
        .iter()
        .any(|(n, v)| *n == "retry-after" && v == "7"));
    assert_eq!(
        x.admitted,
        vec![b"ann\x1f".to_vec()],
        "the exact key is counted"
    );

    let auth = Policy::parse(
        "on_http_request:\n  - actions: [{type: basic-auth, config: {credentials: ['a:b'], realm: staff}}]\n",
    )
    .unwrap();
    let Verdict::Respond(refused) = auth.on_http_request[0].actions[0].execute(&mut x) else {
        panic!("no credentials: refused");
    };
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), Some("ERR_IG_3302"));
    assert!(refused.headers.iter().any(|(n, v)| {
        *n == "www-authenticate" && v == "Basic realm=\"staff\", charset=\"UTF-8\""
    }));
}

#[test]
fn rules_with_expressions() {
    let p = Policy::parse(
        "on_http_request:\n  - name: gets\n    expressions: [\"req.method == 'GET'\", \"'x-a' in req.headers\"]\n    actions: [{type: deny}]\n",
    )
    .unwrap();
    let rule = &p.on_http_request[0];
    let mut x = Fake::default();
    assert!(!rule.applies(&x));
    x.headers.0.push(("X-A".into(), "1".into()));
    assert!(rule.applies(&x));
    let e = parse_err("on_http_request:\n  - expressions: [\"req.method == 'GET'\", \"req.methd == 1\"]\n    actions: [{type: deny}]\n");
    assert_eq!(e.path, "on_http_request[0].expressions[1]");
    assert!(
        e.message
            .contains("`req.methd == 1`: column 1: unknown variable"),
        "{e}"
    );
    let e = parse_err("on_http_request:\n  - expressions: [\"res.status_code == 200\"]\n    actions: [{type: deny}]\n");
    assert!(
        e.message.contains("not available in on_http_request"),
        "{e}"
    );
    let e = parse_err("on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: '${req.nope}'}\n");
    assert_eq!(e.path, "on_http_request[0].actions[0].config");
    assert!(
        e.message.contains("body: column 3: unknown variable"),
        "{e}"
    );
    // A cloud endpoint's only terminating rule has a condition: it can fall through.
    let conditional = "on_http_request:\n  - expressions: [\"req.method == 'GET'\"]\n    actions: [{type: deny}]\n";
    let e = check("http://a.example.com", EndpointKind::Cloud, conditional).unwrap_err();
    assert!(e.message.contains("must end every request"), "{e}");
}

#[test]
fn dynamic_forward_targets_are_checked_per_request() {
    let p = Policy::parse(
        "on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: 'https://${req.headers[\"x-service\"][0]}.internal'}\n",
    )
    .unwrap();
    let Action::ForwardInternal(f) = &p.on_http_request[0].actions[0] else {
        panic!()
    };
    let mut x = Fake::default();
    x.headers.0.push(("x-service".into(), "billing".into()));
    assert_eq!(
        f.resolve(&x).unwrap().to_string(),
        "https://billing.internal"
    );
    x.headers.0[0].1 = "evil.com/".into();
    assert!(f.resolve(&x).is_err());
    x.headers.0[0].1 = "a.example".into();
    assert!(f.resolve(&x).is_ok(), "a.example.internal is internal");
}

/// The hosted service's documented fields are taken as its docs write them; unknown
/// fields and values still name their path.
#[test]
fn documented_fields_of_the_hosted_service() {
    let ok = |text: &str| Policy::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    ok("on_http_request:\n  - actions:\n      - type: rate-limit\n        config:\n          name: Only allow 30 requests per minute\n          algorithm: sliding_window\n          capacity: 30\n          rate: 60s\n          bucket_key:\n            - req.host\n          enforce: false\n");
    ok("on_http_request:\n  - actions:\n      - type: restrict-ips\n        config: {enforce: false, allow: [\"::/0\"]}\n      - type: basic-auth\n        config: {enforce: false, realm: r, credentials: [\"user:password1\"]}\n");
    ok("on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config: {enforce: true, deny: [10.0.0.0/8]}\n");
    ok("on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: https://a.internal, binding: internal}\n");
    ok("on_http_request:\n  - actions:\n      - type: url-rewrite\n        config: {to: /only}\n");
    // Actions record results only for a policy that reads some.
    assert!(!ok(SEED).reads_results);
    assert!(ok("on_http_request:\n  - expressions: ['actions.ngrok.rate_limit.limited']\n    actions: [{type: deny}]\n").reads_results);
    ok("on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n        config: {mutual_tls_verification_strategy: request}\n");
    let p = ok("on_http_request:\n  - actions:\n      - type: set-vars\n        config:\n          vars:\n            - a: x\n            - b: ${vars.a}\n            - n: 3\n            - yes_no: true\n");
    let Action::SetVars(set) = &p.on_http_request[0].actions[0] else {
        panic!()
    };
    let names: Vec<_> = set
        .vars
        .iter()
        .map(|(n, source)| {
            let written = match source {
                set_vars::VarSource::Template(t) => serde_json::Value::from(t.source()),
                set_vars::VarSource::Literal(v) => v.clone(),
            };
            (n.as_str(), written)
        })
        .collect();
    assert_eq!(
        names,
        [
            ("a", serde_json::json!("x")),
            ("b", serde_json::json!("${vars.a}")),
            ("n", serde_json::json!(3)),
            ("yes_no", serde_json::json!(true)),
        ]
    );

    for (text, want) in [
        ("on_http_request:\n  - actions:\n      - type: rate-limit\n        config: {name: n, algorithm: token_bucket, capacity: 1, rate: 60s}\n", "unknown variant `token_bucket`"),
        ("on_http_request:\n  - actions:\n      - type: rate-limit\n        config: {capacity: 1, rate: 60s, enforce: maybe}\n", "invalid type"),
        ("on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {url: https://a.internal, binding: public}\n", "binding `public`"),
        ("on_http_request:\n  - actions:\n      - type: set-vars\n        config: {vars: [{a: x, b: y}]}\n", "vars[0]: each entry of the list is a map of exactly one name"),
        ("on_http_request:\n  - actions:\n      - type: redirect\n        config: {from: '((', to: /}\n", "from: invalid regex"),
        ("on_http_request:\n  - actions:\n      - type: restrict-ips\n        config: {enforce: false, allow: [::/0], ip_policies: [ipp_1]}\n", "unknown field `ip_policies`"),
        ("on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n        config: {mutual_tls_certificate_authorities: [ca_2abc]}\n", "`ca_2abc` is not PEM"),
        ("on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n        config: {mutual_tls_verification_strategy: require-and-verify}\n", "needs mutual_tls_certificate_authorities"),
        ("on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n        config: {mutual_tls_verification_strategy: verify-if-given}\n", "unknown variant `verify-if-given`"),
    ] {
        let e = parse_err(text).to_string();
        assert!(e.contains(want), "{text}\n{e}");
        assert!(e.contains("[0].actions[0]"), "the path: {e}");
    }
}
