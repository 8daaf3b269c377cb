use super::*;

/// The query `a=1&b=2` of [`Var::Query`], parsed.
const QUERY: &[(&str, &str)] = &[("a", "1"), ("b", "2")];

struct Fake {
    headers: Vec<(&'static str, &'static str)>,
    dns_names: Vec<String>,
    vars: Vec<(&'static str, serde_json::Value)>,
}

impl Facts for Fake {
    fn string(&self, var: Var) -> &str {
        match var {
            Var::Method => "GET",
            Var::Host => "api.example.com",
            Var::Path => "/api/v1/users",
            Var::Query => "a=1&b=2",
            Var::ClientIp => "10.1.2.3",
            Var::Scheme => "https",
            Var::Authority => "api.example.com:8443",
            Var::UserAgent => "curl/8.5.0",
            Var::ReqContentTypeRaw => "application/json; charset=utf-8",
            Var::Tls(TlsVar::Version) => "1.3",
            Var::Tls(TlsVar::Cert(
                CertOf::Client,
                CertVar::SubjectField(NameField::CommonName),
            )) => "ExampleClient",
            _ => "",
        }
    }
    fn int(&self, var: Var) -> i64 {
        match var {
            Var::StatusCode => 404,
            Var::ContentLength => 12,
            // 2030-01-01T00:00:00Z.
            Var::Tls(TlsVar::Cert(CertOf::Client, CertVar::NotAfter)) => 1_893_456_000_000_000_000,
            _ => 0,
        }
    }
    fn boolean(&self, var: Var) -> bool {
        var == Var::Tls(TlsVar::SessionResumed)
    }
    fn list(&self, var: Var) -> &[String] {
        match var {
            Var::Tls(TlsVar::Cert(CertOf::Client, CertVar::SanDnsNames)) => &self.dns_names,
            _ => &[],
        }
    }
    fn count(&self, map: MapVar, key: &str) -> usize {
        match map {
            MapVar::RequestHeaders => self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(key))
                .count(),
            MapVar::QueryParams => QUERY.iter().filter(|(n, _)| *n == key).count(),
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
            MapVar::QueryParams => QUERY
                .iter()
                .filter(|(n, _)| *n == key)
                .nth(index)
                .map(|(_, v)| *v),
            _ => None,
        }
    }
    fn map_size(&self, _: MapVar) -> usize {
        self.headers.len()
    }
    fn keys(&self, map: MapVar) -> Vec<String> {
        let mut keys: Vec<String> = match map {
            MapVar::RequestHeaders => self.headers.iter().map(|(n, _)| n.to_string()).collect(),
            MapVar::QueryParams => QUERY.iter().map(|(n, _)| n.to_string()).collect(),
            MapVar::ResponseHeaders => Vec::new(),
        };
        keys.dedup();
        keys
    }
    fn user_var(&self, name: &str) -> Option<&serde_json::Value> {
        self.vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

fn fake() -> Fake {
    Fake {
        dns_names: vec!["a.example.com".into(), "b.example.com".into()],
        headers: vec![
            ("x-api-key", "k1"),
            ("accept", "text/html"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("cookie", "session=abc123; theme=dark"),
            ("cookie", "theme=light"),
        ],
        vars: vec![
            ("tier", serde_json::json!("gold")),
            ("n", serde_json::json!(3)),
            ("flag", serde_json::json!(true)),
            ("list", serde_json::json!([1, 2, 3])),
            (
                "map",
                serde_json::json!({"key": "value", "nested": {"key": ["v1", "v2"]}}),
            ),
        ],
    }
}

/// What `src` renders to in a request phase (as `${src}` would), panicking with the
/// expression on any error.
fn rendered(f: &Fake, src: &str) -> String {
    let e =
        Expression::compile_any(src, Phase::HttpRequest).unwrap_or_else(|e| panic!("{src}: {e}"));
    let v = e.eval(f).unwrap_or_else(|e| panic!("{src}: {e}"));
    let mut out = String::new();
    v.write_to(f, &mut out);
    out
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
    let e = err("req.method.sha3() == 'X'", Phase::HttpRequest);
    assert!(e.message.contains("unknown function"), "{e}");
    let e = err("req.method.replace('a') == 'X'", Phase::HttpRequest);
    assert!(
        e.message
            .contains("`replace` takes 2 argument(s) and up to 1 more"),
        "{e}"
    );
    let e = err("req.method.charAt('1') == 'X'", Phase::HttpRequest);
    assert!(
        e.message.contains("charAt expects int, found string"),
        "{e}"
    );
    let e = err(
        "getReqHeader('x').size() > 0 && hasResHeader('y')",
        Phase::HttpRequest,
    );
    assert!(e.message.contains("`res.headers` is not available"), "{e}");
    let e = err("hasReqHeader('x')", Phase::TcpConnect);
    assert!(e.message.contains("not available in on_tcp_connect"), "{e}");
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

#[test]
fn request_variables_of_the_hosted_docs() {
    let f = fake();
    let value = |src: &str| rendered(&f, src);
    assert_eq!(
        value("req.url"),
        "https://api.example.com:8443/api/v1/users?a=1&b=2"
    );
    assert_eq!(value("req.url.raw"), value("req.url"));
    assert_eq!(value("req.url.uri"), "/api/v1/users?a=1&b=2");
    assert_eq!(value("req.url.authority"), "api.example.com:8443");
    assert_eq!(value("req.url.host"), "api.example.com");
    assert_eq!(value("req.url.port"), "8443");
    assert_eq!(value("req.url.user_password"), "");
    assert_eq!(value("req.user_agent"), "curl/8.5.0");
    assert_eq!(value("req.content_type"), "application/json");
    assert_eq!(
        value("req.content_type.raw"),
        "application/json; charset=utf-8"
    );
    let now = value("time.now");
    assert!(
        now.len() == 20 && now.ends_with('Z') && now.as_bytes()[10] == b'T',
        "{now}"
    );
    assert!(Expression::compile("req.user_agent.contains('curl')", Phase::HttpRequest).is_ok());
    assert!(Expression::compile("res.location == '/'", Phase::HttpResponse).is_ok());
    assert!(Expression::compile("endpoint.port == 443", Phase::TcpConnect).is_ok());
}

/// The macros page's own examples, with the results it gives.
#[test]
fn macros_of_the_hosted_docs() {
    let f = fake();
    let value = |src: &str| rendered(&f, src);
    for (src, want) in [
        ("'TacoCat'.lowerAscii()", "tacocat"),
        ("'TacoCÆt Xii'.upperAscii()", "TACOCÆT XII"),
        ("'Ärger in Österreich'.lower()", "ärger in österreich"),
        ("'Ärger'.upper()", "ÄRGER"),
        ("'  \\ttrim\\n    '.trim()", "trim"),
        ("'gums'.reverse()", "smug"),
        ("'hello'.charAt(4)", "o"),
        ("'hello'.charAt(5)", ""),
        ("'hello mellow'.indexOf('')", "0"),
        ("'hello mellow'.indexOf('ello')", "1"),
        ("'hello mellow'.indexOf('jello')", "-1"),
        ("'hello mellow'.indexOf('', 2)", "2"),
        ("'hello mellow'.indexOf('ello', 2)", "7"),
        ("'hello mellow'.lastIndexOf('')", "12"),
        ("'hello mellow'.lastIndexOf('ello')", "7"),
        ("'hello mellow'.lastIndexOf('ello', 6)", "1"),
        ("'tacocat'.substring(4)", "cat"),
        ("'tacocat'.substring(0, 4)", "taco"),
        ("'hello mellow'.replace('l', 'L')", "heLLo meLLow"),
        ("'hello mellow'.replace('l', 'L', 2)", "heLLo mellow"),
        ("'hello mellow'.replace('x', 'X')", "hello mellow"),
        ("'hello mellow'.split()", "hello, mellow"),
        ("'hello mellow'.split(' ', 1)", "hello"),
        ("'hello,mellow,hi'.split(',', 2)", "hello, mellow"),
        ("'a,b,c'.split(',')[2]", "c"),
        ("['hello', 'mellow'].join()", "hellomellow"),
        ("['hello', 'mellow'].join(' ')", "hello mellow"),
        ("'some:thing'.encodeBase64()", "c29tZTp0aGluZw=="),
        ("'c29tZTp0aGluZw=='.decodeBase64()", "some:thing"),
        ("'i;md/r/$y'.escapeUrl()", "i%3Bmd%2Fr%2F%24y"),
        ("url.escape('i;md/r/$y')", "i%3Bmd%2Fr%2F%24y"),
        ("'i%3Bmd%2Fr%2F%24y'.unescapeUrl()", "i;md/r/$y"),
        ("url.unescape('i%3Bmd%2Fr%2F%24y')", "i;md/r/$y"),
        ("'192.168.1.1'.isPrivateIp()", "true"),
        ("'8.8.8.8'.isPrivateIp()", "false"),
        ("'https://ngrok.com'.isURL()", "true"),
        ("'not a url'.isURL()", "false"),
        ("inCidrRange('192.168.1.100', '192.168.1.0/24')", "true"),
        ("inCidrRange('192.168.2.1', '192.168.1.0/24')", "false"),
        ("inCidrRange('192.168.1.1', 'not a cidr')", "false"),
        (
            "inCidrRanges('192.168.1.100', ['192.168.1.0/24', '10.0.0.0/8'])",
            "true",
        ),
        (
            "inCidrRanges(conn.client_ip, ['bad', '10.0.0.0/8'])",
            "true",
        ),
        (
            "basic_auth.encode('username', 'password1')",
            "Basic dXNlcm5hbWU6cGFzc3dvcmQx",
        ),
        ("getReqHeader('X-Api-Key')", "k1"),
        ("size(getReqHeader('nope'))", "0"),
        ("hasReqHeader('Accept')", "true"),
        ("hasReqHeader('nope')", "false"),
        ("getQueryParam('b')", "2"),
        ("hasQueryParam('a') && !hasQueryParam('c')", "true"),
        ("getReqHeader('x-multi').join('+')", "a+b"),
    ] {
        assert_eq!(value(src), want, "{src}");
    }
    // Run-time errors make a rule not match, as CEL's do.
    for src in [
        "'hello'.charAt(-1) == ''",
        "'hello'.charAt(6) == ''",
        "'tacocat'.substring(4, 2) == ''",
        "'%zz'.unescapeUrl() == ''",
        "'###'.decodeBase64() == ''",
    ] {
        let e = Expression::compile(src, Phase::HttpRequest).unwrap();
        assert!(e.eval(&f).is_err(), "{src}");
        assert!(!e.matches(&f), "{src}");
    }
}

/// Numbers, timestamps and durations, with the docs' own examples.
#[test]
fn doubles_timestamps_and_durations() {
    let f = fake();
    let value = |src: &str| rendered(&f, src);
    for (src, want) in [
        ("1 + 2 * 3", "7"),
        ("7 / 2", "3"),
        ("7 % 4", "3"),
        ("-(2 - 5)", "3"),
        ("0.5 + 0.25", "0.75"),
        ("uint(1.5) + 10u", "11"),
        ("int(50.5)", "50"),
        ("int('42') + 1", "43"),
        ("double('2.5') * 2.0", "5"),
        ("double(3) > 2.5", "true"),
        ("1 < 1.5", "true"),
        ("'a' + 'b'", "ab"),
        ("string(12) + string(true)", "12true"),
        ("timestamp('2023-12-25T00:00:00Z')", "2023-12-25T00:00:00Z"),
        (
            "timestamp('2023-12-25T00:00:00Z') > timestamp('2023-12-24T23:59:59Z')",
            "true",
        ),
        (
            "timestamp('2023-12-25T01:00:00Z') - timestamp('2023-12-25T00:00:00Z')",
            "3600s",
        ),
        (
            "timestamp('2023-12-25T00:00:00Z') + duration('1h30m')",
            "2023-12-25T01:30:00Z",
        ),
        (
            "duration('1h30m') > duration('90m') || duration('1h30m') == duration('90m')",
            "true",
        ),
        ("duration('1.5s')", "1.5s"),
        ("timestamp('2023-12-25T00:00:00Z').getDate()", "25"),
        (
            "timestamp('2023-12-25T00:00:00Z').getDate('America/Los_Angeles')",
            "24",
        ),
        ("timestamp('2023-12-25T00:00:00Z').getDayOfMonth()", "24"),
        ("timestamp('2023-12-25T12:00:00Z').getDayOfWeek()", "1"),
        ("timestamp('2023-12-25T12:00:00Z').getDayOfYear()", "358"),
        ("timestamp('2023-12-25T12:00:00Z').getFullYear()", "2023"),
        ("timestamp('2023-12-25T12:00:00Z').getHours()", "12"),
        (
            "timestamp('2023-12-25T12:00:00.500Z').getMilliseconds()",
            "500",
        ),
        ("timestamp('2023-12-25T12:30:00Z').getMinutes()", "30"),
        ("timestamp('2023-12-25T12:00:00Z').getMonth()", "11"),
        ("timestamp('2023-12-25T12:30:30Z').getSeconds()", "30"),
        (
            "timestamp('2024-01-01T10:00:00Z').getDate('Asia/Tokyo')",
            "1",
        ),
        ("duration('3h').getHours()", "3"),
        ("duration('1.234s').getMilliseconds()", "234"),
        ("duration('1h30m').getMinutes()", "90"),
        ("duration('1m30s').getSeconds()", "90"),
        (
            "timestamp(time.now) > timestamp('2023-12-31T00:00:00Z')",
            "true",
        ),
        ("conn.ts.start == timestamp(0)", "true"),
        ("rand.double() >= 0.0 && rand.double() < 1.0", "true"),
        ("rand.int() >= 0 && rand.int() <= 1", "true"),
        ("rand.int(5, 5)", "5"),
    ] {
        assert_eq!(value(src), want, "{src}");
    }
    let err = |src: &str| Expression::compile_any(src, Phase::HttpRequest).unwrap_err();
    assert!(err("timestamp('yesterday')")
        .message
        .contains("not a valid timestamp"));
    assert!(err("duration('1d')")
        .message
        .contains("not a valid duration"));
    assert!(err("1 + 'a'").message.contains("no + for int and string"));
    assert!(err("1 + 1.0").message.contains("no + for int and double"));
    assert!(err("timestamp(true)")
        .message
        .contains("does not take a bool"));
    let e = err("timestamp('2023-12-25T00:00:00Z').getDate('Mars/Base')");
    assert!(e.message.contains("unknown time zone `Mars/Base`"), "{e}");
    // Run-time failures: a rule that cannot be evaluated does not match.
    for src in [
        "1 / 0 == 0",
        "int('x') == 0",
        "timestamp(req.method) > timestamp(0)",
    ] {
        let e = Expression::compile(src, Phase::HttpRequest).unwrap();
        assert!(!e.matches(&f), "{src}");
    }
}

/// `vars.*` hold values of any type (set-vars' documented form); they are checked
/// where they are used, when the rule runs.
#[test]
fn typed_vars() {
    let f = fake();
    let value = |src: &str| rendered(&f, src);
    for (src, want) in [
        ("vars.tier", "gold"),
        ("vars.n + 1", "4"),
        ("vars.n == 3", "true"),
        ("vars.n == '3'", "false"),
        ("vars.flag == true", "true"),
        ("vars.flag ? 'yes' : 'no'", "yes"),
        ("vars.list[0]", "1"),
        ("size(vars.list)", "3"),
        ("2 in vars.list", "true"),
        ("vars.map.key", "value"),
        ("vars.map['key']", "value"),
        ("vars.map.nested.key[1]", "v2"),
        ("'key' in vars.map", "true"),
        ("has(vars.map.nested)", "true"),
        ("has(vars.map.missing)", "false"),
        ("vars.tier.upperAscii()", "GOLD"),
        ("vars.list", "[1,2,3]"),
    ] {
        assert_eq!(value(src), want, "{src}");
    }
    let cond = |src: &str| {
        Expression::compile(src, Phase::HttpRequest)
            .unwrap()
            .matches(&f)
    };
    assert!(cond("vars.flag"));
    // A value of another type than its use wants fails the rule, not the request.
    assert!(!cond("vars.list.startsWith('a')"));
    assert!(!cond("vars.map.missing == 'x'"));
}

#[test]
fn request_cookies_as_documented() {
    let f = fake();
    let value = |src: &str| rendered(&f, src);
    for (src, want) in [
        ("size(req.cookies) > 0", "true"),
        ("req.cookies['session'][0].name == 'session'", "true"),
        ("req.cookies['session'][0].value", "abc123"),
        ("req.cookies['theme'][1].value", "light"),
        ("'theme' in req.cookies", "true"),
        ("getReqCookie('session').value", "abc123"),
        ("getReqCookie('theme').value", "dark"),
        ("hasReqCookie('session')", "true"),
        ("hasReqCookie('nope')", "false"),
    ] {
        assert_eq!(value(src), want, "{src}");
    }
    let e = Expression::compile("getReqCookie('nope').value == 'x'", Phase::HttpRequest).unwrap();
    assert!(!e.matches(&f), "a missing cookie fails the rule");
    assert!(Expression::compile("hasResCookie('a')", Phase::HttpRequest).is_err());
    assert!(Expression::compile(
        "res.cookies['s'][0].expires > timestamp(time.now) && res.cookies['s'][0].max_age > duration('24h')",
        Phase::HttpResponse
    )
    .is_ok());
}

/// JSON, query strings, digests and list helpers, with the macros page's examples.
#[test]
fn json_query_strings_digests_and_lists() {
    let f = fake();
    let value = |src: &str| rendered(&f, src);
    for (src, want) in [
        ("json.decode('{\"a\":\"b\"}').a", "b"),
        ("json.decode('[\"a\",\"b\",\"c\"]')[0] == 'a'", "true"),
        ("json.encode({'a': 'b'})", "{\"a\":\"b\"}"),
        ("json.encode(['a', 'b', 'c'])", "[\"a\",\"b\",\"c\"]"),
        ("['a', 'b', 'c'].encodeJson()", "[\"a\",\"b\",\"c\"]"),
        (
            "{'a': 'b', 'c': 'd'}.encodeJson()",
            "{\"a\":\"b\",\"c\":\"d\"}",
        ),
        ("'{\"x\": 1}'.decodeJson().x + 1", "2"),
        ("'{\"x\": 1}'.isJson() && !'nope'.isJson()", "true"),
        ("queryString.decode('a=b&c=d')['c']", "d"),
        ("queryString.decode(req.url.query)['b'] == '2'", "true"),
        ("queryString.encode({'a': 'b', 'c': 'd'})", "a=b&c=d"),
        ("{'a': 'b', 'c': 'd'}.encodeQueryString()", "a=b&c=d"),
        ("'a=b&c=d'.decodeQueryString().a", "b"),
        ("'a=b&c=d'.isQueryString()", "true"),
        ("hash.crc32('hello')", "3610a686"),
        ("hash.crc32('hello', 'base64')", "NhCmhg=="),
        ("hash.crc64('hello')", "3c3eeee2d8100000"),
        ("hash.md5('hello')", "5d41402abc4b2a76b9719d911017c592"),
        ("hash.md5('hello', 'base64')", "XUFAKrxLKna5cZ2REBfFkg=="),
        (
            "hash.sha1('hello')",
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        ),
        (
            "hash.sha256('hello')",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ),
        ("hash.sha512('hello').size()", "128"),
        ("hash.xxhash64('hello')", "26c7827d889f6da3"),
        ("hash.xxhash64('hello', 'base64')", "JseCfYifbaM="),
        ("'hello'.sha256() == hash.sha256('hello')", "true"),
        ("[1, 2, 3, 4].slice(1, 3)", "[2,3]"),
        ("[1, [2, 3], [4]].flatten()", "[1,2,3,4]"),
        ("[1, [2, [3, 4]]].flatten()", "[1,2,[3,4]]"),
        ("[1, [2, [3, 4]]].flatten(2)", "[1,2,3,4]"),
        ("[3, 2, 1].sort()", "[1,2,3]"),
        ("['b', 'c', 'a'].sort()", "[\"a\",\"b\",\"c\"]"),
        ("[1, 2, 2, 3, 3, 3].distinct()", "[1,2,3]"),
        ("[1, 'b', 2, 'b'].distinct()", "[1,\"b\",2]"),
        ("lists.range(5)", "[0,1,2,3,4]"),
        ("size(lists.range(3))", "3"),
        ("2 in [1, 2, 3]", "true"),
        ("json.decode('[\"a\",\"b\"]').join('-')", "a-b"),
    ] {
        assert_eq!(value(src), want, "{src}");
    }
    for src in [
        "[1, 'b'].sort() == []",
        "json.decode('{') == {}",
        "[1, 2].flatten(-1) == []",
        "hash.md5('x', 'octal') == ''",
    ] {
        let e = Expression::compile(src, Phase::HttpRequest).unwrap();
        assert!(!e.matches(&f), "{src}");
    }
}

/// Every evaluation step returns a `Val`: it stays as small as a borrowed string and
/// its tag, which the common comparisons pay for.
#[test]
fn values_stay_small() {
    assert!(
        std::mem::size_of::<Val<'_>>() <= 32,
        "{}",
        std::mem::size_of::<Val<'_>>()
    );
}

#[test]
fn connection_tls_variables() {
    let f = fake();
    assert_eq!(rendered(&f, "conn.tls.version"), "1.3");
    assert_eq!(
        rendered(&f, "conn.tls.client.subject.common_name"),
        "ExampleClient"
    );
    assert_eq!(rendered(&f, "conn.tls.session_resumed"), "true");
    assert_eq!(rendered(&f, "size(conn.tls.client.san.dns_names)"), "2");
    assert_eq!(
        rendered(&f, "conn.tls.client.san.dns_names[1]"),
        "b.example.com"
    );
    assert!(check("'a.example.com' in conn.tls.client.san.dns_names"));
    assert!(check(
        "conn.tls.client.validity.not_after > timestamp('2029-12-31T00:00:00Z')"
    ));
    // Lists compare whole, as the docs' `conn.tls.client.issuer.country == ['US']`.
    assert!(check("conn.tls.server.subject.organization == []"));
    assert!(check(
        "conn.tls.client.san.dns_names == ['a.example.com', 'b.example.com']"
    ));
    assert!(check("conn.tls.client.san.dns_names != ['a.example.com']"));
    assert!(check("req.headers['x-multi'] == ['a', 'b']"));
    // Types as documented: organization is a list, common_name a string.
    let e = Expression::compile(
        "conn.tls.client.subject.organization == 'x'",
        Phase::HttpRequest,
    )
    .unwrap_err();
    assert!(e.message.contains("cannot compare"), "{e}");
    Expression::compile(
        "conn.tls.cipher_suite == 'TLS_AES_128_GCM_SHA256'",
        Phase::TcpConnect,
    )
    .unwrap();
    let e = Expression::compile("conn.tls.client.extensions[0].critical", Phase::HttpRequest)
        .unwrap_err();
    assert!(e.message.contains("unknown variable"), "{e}");
}

#[test]
fn user_agent_fields() {
    let f = fake();
    assert_eq!(rendered(&f, "req.user_agent.name"), "curl");
    assert_eq!(rendered(&f, "req.user_agent.version"), "8.5.0");
    assert!(check(
        "!req.user_agent.is_bot && !req.user_agent.is_desktop"
    ));
    assert!(check("req.user_agent.os == ''"));
    let e = Expression::compile("req.user_agent.is_bot", Phase::TcpConnect).unwrap_err();
    assert!(e.message.contains("not available in on_tcp_connect"), "{e}");
    let e = Expression::compile("req.user_agent.browser == 'x'", Phase::HttpRequest).unwrap_err();
    assert!(e.message.contains("unknown variable"), "{e}");
}

#[test]
fn list_and_map_macros_as_documented() {
    let f = fake();
    // The macros page's examples.
    assert_eq!(rendered(&f, "[1, 2, 3].all(x, x > 0)"), "true");
    assert_eq!(rendered(&f, "[1, -2, 3].exists(x, x > 0)"), "true");
    assert_eq!(rendered(&f, "[1, 2, 3].exists_one(x, x == 2)"), "true");
    assert_eq!(rendered(&f, "[1, 2, 3].filter(x, x > 1)"), "[2,3]");
    assert_eq!(rendered(&f, "[1, 2, 3].map(n, n * n)"), "[1,4,9]");
    assert_eq!(
        rendered(&f, "[1, 2, 3, 4].map(num, num % 2 == 0, num * 2)"),
        "[4,8]"
    );
    // Over variables: header values, vars' lists and maps (keys), results.
    assert!(check("req.headers['x-multi'].all(v, v.size() == 1)"));
    assert!(check("req.headers['x-multi'].exists(v, v == 'b')"));
    assert!(check(
        "!req.headers['x-multi'].exists_one(v, v.size() == 1)"
    ));
    assert!(check("vars.list.filter(i, i >= 2) == [2, 3]"));
    assert!(check("vars.map.exists(k, k == 'nested')"));
    assert!(check("vars.map.all(k, k.size() > 2)"));
    assert_eq!(rendered(&f, "size(vars.list.map(i, i + 1))"), "3");
    assert_eq!(
        rendered(&f, "['a', 'b'].map(s, s.upper()).join('-')"),
        "A-B"
    );
    // Nested, with the outer name seen inside.
    assert!(check("[1, 2].all(a, [2, 3].exists(b, b > a))"));
    // Empty ranges.
    assert!(check("[].all(x, false) && ![].exists(x, true)"));
    // Types are checked inside: a bound string has no fields, `x` is not outside.
    let err = |src: &str| Expression::compile(src, Phase::HttpRequest).unwrap_err();
    let e = err("['a'].all(x, x.name == 'a')");
    assert!(e.message.contains("has no fields"), "{e}");
    let e = err("['a'].all(x, true) && x == 'a'");
    assert!(e.message.contains("unknown variable `x`"), "{e}");
    // Maps of the request: their keys.
    assert!(check("req.headers.exists(k, k == 'x-api-key')"));
    assert!(check("req.headers.exists_one(k, k == 'x-multi')"));
    assert_eq!(
        rendered(&f, "req.url.query_params.map(k, k.upper())"),
        "[\"A\",\"B\"]"
    );
    let e = err("req.method.all(x, true)");
    assert!(e.message.contains("cannot iterate over a string"), "{e}");
}

#[test]
fn format_quote_and_url_parse() {
    let f = fake();
    assert_eq!(rendered(&f, "'hello %s'.format(['world'])"), "hello world");
    assert_eq!(
        rendered(&f, "'%s %d %.1f %x'.format([req.method, 42, 2.25, 255])"),
        "GET 42 2.2 ff"
    );
    assert_eq!(rendered(&f, "strings.quote('a\"b')"), "\"a\\\"b\"");
    assert!(check("url.parse('https://ngrok.com').host == 'ngrok.com'"));
    assert!(check("url.parse(req.url).host == 'api.example.com:8443'"));
    assert!(check("req.url.parseUrl().path == '/api/v1/users'"));
    // A clause its argument does not fit fails the expression, at run time.
    let e = Expression::compile_any("'%d'.format(['x'])", Phase::HttpRequest).unwrap();
    assert!(e.eval(&f).is_err());
}

#[test]
fn bytes_as_documented() {
    let f = fake();
    assert!(check("base64.decode('aGVsbG8=') == b'hello'"));
    assert!(check("base64.encode(b'hello') == 'aGVsbG8='"));
    assert!(check("b'hello'.size() == 5 && size(b'world!') == 6"));
    assert!(check("string(base64.decode('aGVsbG8=')) == 'hello'"));
    assert!(check("bytes('hi') == b'hi' && b'a' < b'b'"));
    assert_eq!(
        rendered(&f, "base64.decode(base64.encode(bytes(req.method)))"),
        "GET"
    );
    // Not base64: an error when it runs, as documented.
    let e = Expression::compile_any("base64.decode('aGVsbG8')", Phase::HttpRequest).unwrap();
    assert!(e.eval(&f).is_err());
    let e = Expression::compile("b'x' == 'x'", Phase::HttpRequest).unwrap_err();
    assert!(
        e.message.contains("cannot compare bytes with string"),
        "{e}"
    );
    let e = Expression::compile("base64.encode('x') == ''", Phase::HttpRequest).unwrap_err();
    assert!(e.message.contains("expects bytes"), "{e}");
}
