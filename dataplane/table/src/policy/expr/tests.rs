use super::*;

struct Fake {
    headers: Vec<(&'static str, &'static str)>,
    vars: Vec<(&'static str, &'static str)>,
}

impl Facts for Fake {
    fn string(&self, var: Var) -> &str {
        match var {
            Var::Method => "GET",
            Var::Host => "api.example.com",
            Var::Path => "/api/v1/users",
            Var::Query => "a=1&b=2",
            Var::ClientIp => "10.1.2.3",
            _ => "",
        }
    }
    fn int(&self, var: Var) -> i64 {
        match var {
            Var::StatusCode => 404,
            Var::ContentLength => 12,
            _ => 0,
        }
    }
    fn count(&self, map: MapVar, key: &str) -> usize {
        match map {
            MapVar::RequestHeaders => self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(key))
                .count(),
            _ => 0,
        }
    }
    fn value(&self, map: MapVar, key: &str, index: usize) -> Option<&str> {
        match map {
            MapVar::RequestHeaders => self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(key))
                .nth(index)
                .map(|(_, v)| *v),
            _ => None,
        }
    }
    fn map_size(&self, _: MapVar) -> usize {
        self.headers.len()
    }
    fn user_var(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

fn fake() -> Fake {
    Fake {
        headers: vec![
            ("x-api-key", "k1"),
            ("accept", "text/html"),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ],
        vars: vec![("tier", "gold")],
    }
}

fn check(src: &str) -> bool {
    Expression::compile(src, Phase::HttpRequest)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .matches(&fake())
}

#[test]
fn evaluates_the_spec_subset() {
    for (src, want) in [
        ("req.method == 'GET'", true),
        ("req.method != 'GET'", false),
        (
            "req.url.path.startsWith('/api') && req.method == 'GET'",
            true,
        ),
        ("req.url.path.endsWith('/users')", true),
        ("req.host.contains('example')", true),
        ("req.url.path.matches('^/api/v[0-9]+/')", true),
        ("req.method.lowerAscii() == 'get'", true),
        ("req.method in ['POST', 'GET']", true),
        ("'x-api-key' in req.headers", true),
        ("'X-API-KEY' in req.headers", true),
        ("'missing' in req.headers", false),
        ("req.headers['x-api-key'][0] == 'k1'", true),
        ("'b' in req.headers['x-multi']", true),
        ("size(req.headers['x-multi']) == 2", true),
        ("req.headers['x-multi'].size() == 2", true),
        ("size(req.method) == 3", true),
        ("has(req.headers.accept)", true),
        ("has(req.headers.nope)", false),
        ("has(vars.tier) && vars.tier == 'gold'", true),
        ("has(vars.other)", false),
        ("req.content_length > 10 && req.content_length <= 12", true),
        ("!(req.method == 'POST') || false", true),
        ("req.method == 'GET' ? true : false", true),
        ("-1 < 0", true),
        ("conn.client_ip.startsWith('10.')", true),
        // A missing header indexed with [0] is an error: the rule does not match,
        // unless the other side of || decides.
        ("req.headers['nope'][0] == 'x'", false),
        ("req.headers['nope'][0] == 'x' || true", true),
        ("vars.unset == 'x'", false),
    ] {
        assert_eq!(check(src), want, "{src}");
    }
}

#[test]
fn errors_have_columns() {
    let err = |src: &str, phase| Expression::compile(src, phase).unwrap_err();
    let e = err("req.method == 1", Phase::HttpRequest);
    assert!(e.message.contains("cannot compare string with int"), "{e}");
    let e = err("req.methd == 'GET'", Phase::HttpRequest);
    assert_eq!(e.column, 1);
    assert!(e.message.contains("unknown variable `req.methd`"), "{e}");
    let e = err(
        "req.method == 'GET' && res.status_code == 200",
        Phase::HttpRequest,
    );
    assert_eq!(e.column, 24, "{e}");
    assert!(
        e.message.contains("not available in on_http_request"),
        "{e}"
    );
    let e = err("req.method ==", Phase::HttpRequest);
    assert!(e.message.starts_with("syntax error"), "{e}");
    let e = err("req.method", Phase::HttpRequest);
    assert!(e.message.contains("must be a bool"), "{e}");
    let e = err("req.url.path.matches(req.method)", Phase::HttpRequest);
    assert!(e.message.contains("string literal"), "{e}");
    let e = err("req.url.path.matches('[')", Phase::HttpRequest);
    assert!(e.message.contains("invalid regex"), "{e}");
    let e = err("req.method.upper() == 'X'", Phase::HttpRequest);
    assert!(e.message.contains("unknown function"), "{e}");
    let e = err("req.method == 'GET'", Phase::TcpConnect);
    assert!(e.message.contains("not available in on_tcp_connect"), "{e}");
    Expression::compile("res.status_code >= 500", Phase::HttpResponse).unwrap();
    Expression::compile("conn.client_ip == '1.2.3.4'", Phase::TcpConnect).unwrap();
}

#[test]
fn templates_interpolate() {
    let t = Template::compile(
        "https://${req.headers['x-api-key'][0]}.internal",
        Phase::HttpRequest,
    )
    .unwrap();
    assert_eq!(t.render(&fake()), "https://k1.internal");
    let t = Template::compile(
        "${req.method} ${req.url.path} ${size(req.headers['x-multi'])} $${literal}",
        Phase::HttpRequest,
    )
    .unwrap();
    assert_eq!(t.render(&fake()), "GET /api/v1/users 2 ${literal}");
    let plain = Template::compile("no expressions", Phase::HttpRequest).unwrap();
    assert!(matches!(
        plain.render(&fake()),
        std::borrow::Cow::Borrowed("no expressions")
    ));
    let e = Template::compile("a ${req.nope} b", Phase::HttpRequest).unwrap_err();
    assert_eq!(e.column, 5, "{e}");
    assert!(Template::compile("a ${req.method", Phase::HttpRequest).is_err());
}
