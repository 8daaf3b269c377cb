//! Policies as the hosted service's documentation writes them (issue #13), run on real
//! sockets: the documented config fields (`enforce`, rate-limit's `name` and
//! `algorithm`, set-vars' list form, forward-internal's `binding`, `${…}` in `from`),
//! the documented redirect and url-rewrite replacement over the whole URL, the
//! `actions.ngrok.*` result variables, and a handful of variables and macros.

use crate::support::*;

/// A data plane serving `app.example.com` with `policy` in front of `upstream`.
fn serve_agent(policy: &str, upstream: std::net::SocketAddr) -> DataPlane {
    let mut dp = DataPlane::start();
    dp.push(vec![with_policy(
        agent("ep_app", "acme", "http://app.example.com", upstream),
        policy,
    )]);
    dp
}

fn serve(policy: &str) -> DataPlane {
    let mut dp = DataPlane::start();
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "http://app.example.com",
        policy,
    )]);
    dp
}

/// `Authorization: Basic` of `user:password`.
fn basic(user_password: &str) -> String {
    use base64::Engine;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

fn send(conn: &mut HttpConn, path: &str, headers: &str) -> Response {
    conn.send(format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n{headers}\r\n").as_bytes());
    conn.read_response()
}

#[test]
fn enforce_false_decides_records_and_lets_the_request_pass() {
    let policy = r#"
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          enforce: false
          allow:
            - 10.0.0.0/8
      - type: basic-auth
        config:
          enforce: false
          credentials:
            - user:password1
  - expressions:
      - actions.ngrok.basic_auth.credentials.authorized || !actions.ngrok.basic_auth.credentials.presented
    actions:
      - type: custom-response
        config:
          body: "ip=${actions.ngrok.restrict_ips.action}/${actions.ngrok.restrict_ips.matched_cidr} presented=${actions.ngrok.basic_auth.credentials.presented} user=${actions.ngrok.basic_auth.credentials.username} ok=${actions.ngrok.basic_auth.credentials.authorized}"
  - actions:
      - type: custom-response
        config:
          status_code: 401
          body: "wrong password for ${actions.ngrok.basic_auth.credentials.username}"
"#;
    let dp = serve(policy);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = send(&mut conn, "/", "");
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.text(), "ip=deny/ presented=false user= ok=false");
    let res = send(&mut conn, "/", &basic("user:password1"));
    assert_eq!(res.text(), "ip=deny/ presented=true user=user ok=true");
    let res = send(&mut conn, "/", &basic("user:nope:x"));
    assert_eq!(res.status, 401);
    assert_eq!(res.text(), "wrong password for user");

    // enforce: true (the default) refuses, and matched_cidr names the range.
    let policy = r#"
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          enforce: true
          allow: ["127.0.0.0/8", "::1/128"]
          deny: ["10.0.0.0/8"]
      - type: custom-response
        config:
          body: "${actions.ngrok.restrict_ips.action} ${actions.ngrok.restrict_ips.matched_cidr}"
"#;
    let dp = serve(policy);
    assert_eq!(
        get(dp.http_addr(), "app.example.com", "/").text(),
        "allow 127.0.0.0/8"
    );
    let deny = "on_http_request:\n  - actions:\n      - type: restrict-ips\n        config: {deny: [127.0.0.0/8]}\n      - type: custom-response\n        config: {body: in}\n";
    let res = get(serve(deny).http_addr(), "app.example.com", "/");
    assert_eq!((res.status, res.error_code()), (403, Some("ERR_IG_3301")));
}

#[test]
fn rate_limit_as_documented_with_enforce_false_and_its_results() {
    // The documented example's fields (name, algorithm, capacity, rate, bucket_key),
    // with enforce: false and a later rule that answers from the results.
    let policy = r#"
on_http_request:
  - actions:
      - type: rate-limit
        config:
          name: Only allow 1 request per minute
          algorithm: sliding_window
          capacity: 1
          rate: 60s
          bucket_key:
            - req.host
            - getReqHeader('x-user')[0]
          enforce: false
  - expressions:
      - actions.ngrok.rate_limit.limited
    actions:
      - type: custom-response
        config:
          status_code: 429
          body: "slow down, ${actions.ngrok.rate_limit.bucket_key}"
  - actions:
      - type: custom-response
        config:
          body: "passed ${actions.ngrok.rate_limit.bucket_key}"
"#;
    let dp = serve(policy);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = send(&mut conn, "/", "X-User: ann\r\n");
    assert_eq!(
        (res.status, res.text()),
        (200, "passed app.example.com,ann".into())
    );
    let res = send(&mut conn, "/", "X-User: ann\r\n");
    assert_eq!(res.status, 429);
    assert_eq!(res.text(), "slow down, app.example.com,ann");
    assert_eq!(
        res.error_code(),
        None,
        "the policy's own answer, not the limit's"
    );
    // Another bucket still passes.
    assert_eq!(send(&mut conn, "/", "X-User: bob\r\n").status, 200);
}

#[test]
fn set_vars_takes_the_documented_list_of_single_entry_maps() {
    let policy = r#"
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - variable_a: "this is variable a"
            - variable_b: "${vars.variable_a} and b"
            - count: 3
  - expressions:
      - vars.count == 3
    actions:
      - type: custom-response
        config:
          body: "${vars.variable_a} | ${vars.variable_b}"
  - actions:
      - type: custom-response
        config:
          status_code: 500
          body: count was not 3
"#;
    let dp = serve(policy);
    assert_eq!(
        get(dp.http_addr(), "app.example.com", "/").text(),
        "this is variable a | this is variable a and b"
    );
}

/// The set-vars page's typed example, verbatim: each value keeps its YAML type.
#[test]
fn set_vars_keeps_the_types_of_its_values() {
    let policy = r#"
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - sample_string: bar
            - sample_double: 1.5
            - sample_bool: true
            - sample_null: null
            - sample_list:
                - 1
                - 2
                - 3
            - sample_map:
                key: value
            - sample_nested_map:
                key:
                  - value1
                  - value2
  - expressions:
      - vars.sample_bool == true
    actions:
      - type: custom-response
        config:
          status_code: 200
          headers:
            content-type: text/plain
          body: ${vars.sample_string} ${vars.sample_double} ${vars.sample_list[0]} ${vars.sample_map.key} ${vars.sample_nested_map.key[1]}
"#;
    let backend = Backend::text("upstream");
    let dp = serve_agent(policy, backend.addr);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.text(), "bar 1.5 1 value value2");
    assert_eq!(res.header("content-type"), Some("text/plain"));
}

#[test]
fn redirect_replaces_the_match_in_the_whole_url() {
    // The redirect page's examples: a partial `from` replaces only what it matched,
    // an anchored one the whole URL, `${…}` composes the anchor; results follow. (The
    // page writes the first `from` with a bare `?`, a quantifier in any regex dialect,
    // which matches no such URL there either: here it is escaped.)
    let policy = r#"
on_http_request:
  - expressions:
      - req.url.path.startsWith('/api/')
    actions:
      - type: redirect
        config:
          from: /api/v1/users\?id=([0-9]+)
          to: /api/v2/users/$1/
          status_code: 301
          headers:
            x-redirected: 'true'
  - expressions:
      - req.url.path.startsWith('/products')
    actions:
      - type: redirect
        config:
          from: ^${req.url.scheme}://${req.url.authority}/products(.*)$
          to: ${req.url.scheme}://${req.url.authority}/store/products$1
  - expressions:
      - req.url.path == '/geo'
    actions:
      - type: redirect
        config:
          to: /api/v2/geo?city=${getReqHeader('x-city')[0]}
  - actions:
      - type: custom-response
        config:
          body: "stayed (${actions.ngrok.redirect.url})"
"#;
    let dp = serve(policy);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = send(&mut conn, "/api/v1/users?id=42", "");
    assert_eq!(res.status, 301);
    assert_eq!(
        res.header("location"),
        Some("http://app.example.com/api/v2/users/42/")
    );
    assert_eq!(res.header("x-redirected"), Some("true"));
    let res = send(&mut conn, "/products/shoes?size=9", "");
    assert_eq!(
        (res.status, res.header("location")),
        (
            302,
            Some("http://app.example.com/store/products/shoes?size=9")
        )
    );
    // A relative `to` gets the request's origin; interpolated spaces are encoded.
    let res = send(&mut conn, "/geo", "X-City: San Francisco\r\n");
    assert_eq!(
        res.header("location"),
        Some("http://app.example.com/api/v2/geo?city=San%20Francisco")
    );
    // A `from` that does not match lets the request go on.
    let res = send(&mut conn, "/api/v3/other", "");
    assert_eq!(res.text(), "stayed ()");
}

#[test]
fn url_rewrite_matches_the_whole_url_and_records_what_it_did() {
    let backend = Backend::start(|r| {
        let rewritten = r.header("x-rewritten").unwrap_or("-").to_string();
        Some(ok(&format!("{} {rewritten}", r.target)))
    });
    // The url-rewrite page's interpolation example, then its results passed on.
    let policy = r#"
on_http_request:
  - actions:
      - type: url-rewrite
        config:
          from: ${req.url.authority}/products/?([a-z]+)?
          to: ${req.url.authority}/products.php?query=$1
      - type: add-headers
        config:
          headers:
            x-rewritten: "${actions.ngrok.url_rewrite.url} ${actions.ngrok.url_rewrite.matches[1]}"
"#;
    let dp = serve_agent(policy, backend.addr);
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(
        conn.get("app.example.com", "/products/shoes").text(),
        "/products.php?query=shoes http://app.example.com/products.php?query=shoes shoes"
    );
    // Nothing matched: the URL and the (empty) results pass unchanged.
    assert_eq!(conn.get("app.example.com", "/other").text(), "/other ");
}

#[test]
fn forward_internal_with_binding_and_its_failure_results() {
    let policy = r#"
on_http_request:
  - actions:
      - type: forward-internal
        config:
          url: https://missing.internal
          binding: internal
          on_error: continue
      - type: custom-response
        config:
          status_code: 503
          body: "${actions.ngrok.forward_internal.url} ${actions.ngrok.forward_internal.error.code} ${actions.forward_internal.error.code}"
"#;
    let dp = serve(policy);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.status, 503);
    assert_eq!(
        res.text(),
        "https://missing.internal ERR_IG_3200 ERR_IG_3200"
    );
}

#[test]
fn variables_and_macros_of_the_hosted_docs_on_real_requests() {
    let policy = r#"
on_http_request:
  - expressions:
      - hasReqHeader('X-Version-Id')
      - inCidrRange(conn.client_ip, '127.0.0.0/8') || inCidrRanges(conn.client_ip, ['::1/128'])
      - getReqHeader('User-Agent')[0].lower().contains('curl')
      - conn.ts.start > timestamp('2023-12-31T00:00:00Z')
      - timestamp(time.now) - conn.ts.start < duration('1h')
      - rand.double() < 1.0
    actions:
      - type: add-headers
        config:
          headers:
            x-a: "${getQueryParam('q')[0].upper()}"
      - type: custom-response
        config:
          body: "${req.url} ${req.url.authority} ${req.user_agent} ${req.content_type} ${actions.ngrok.add_headers.headers_added['x-a']} ${'a,b,c'.split(',').join('+')} ${endpoint.addr}"
  - actions:
      - type: custom-response
        config:
          status_code: 404
          body: no match
"#;
    let dp = serve(policy);
    let mut conn = HttpConn::connect(dp.http_addr());
    let res = send(
        &mut conn,
        "/p?q=hi",
        "X-Version-Id: 7\r\nUser-Agent: Curl/8\r\nContent-Type: text/plain; charset=utf-8\r\n",
    );
    assert_eq!(
        res.text(),
        "http://app.example.com/p?q=hi app.example.com Curl/8 text/plain HI a+b+c app.example.com:80"
    );
    assert_eq!(send(&mut conn, "/", "User-Agent: curl/8\r\n").status, 404);
}

#[test]
fn the_user_agent_is_parsed_into_the_documented_fields() {
    let policy = r#"
on_http_request:
  - expressions:
      - req.user_agent.is_bot
    actions:
      - type: deny
        config:
          status_code: 403
  - actions:
      - type: custom-response
        config:
          body: "${req.user_agent.name} ${req.user_agent.version} ${req.user_agent.os} ${req.user_agent.os_version} ${req.user_agent.is_desktop} ${req.user_agent.is_mobile}"
"#;
    let dp = serve(policy);
    let mut conn = HttpConn::connect(dp.http_addr());
    let safari = "User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_6) \
                  AppleWebKit/603.3.8 (KHTML, like Gecko) Version/10.1.2 Safari/603.3.8\r\n";
    assert_eq!(
        send(&mut conn, "/", safari).text(),
        "Safari 10.1.2 macOS 10.12.6 true false"
    );
    let bot = "User-Agent: Mozilla/5.0 (compatible; Googlebot/2.1; \
               +http://www.google.com/bot.html)\r\n";
    assert_eq!(send(&mut conn, "/", bot).status, 403);
}

#[test]
fn list_and_map_macros_on_real_requests() {
    let policy = r#"
on_http_request:
  - expressions:
      - req.headers.exists(k, k.startsWith('x-debug-'))
    actions:
      - type: deny
        config:
          status_code: 403
  - actions:
      - type: custom-response
        config:
          body: "${getReqHeader('accept')[0].split(',').map(t, t.trim().split(';')[0]).filter(t, t != '*/*').join(' ')} ${req.url.query_params.all(k, k.size() == 1)}"
"#;
    let dp = serve(policy);
    let mut conn = HttpConn::connect(dp.http_addr());
    let accept = "Accept: text/html, application/json;q=0.9, */*;q=0.1\r\n";
    assert_eq!(
        send(&mut conn, "/?a=1&b=2", accept).text(),
        "text/html application/json true"
    );
    assert_eq!(
        send(&mut conn, "/?long=1", accept).text(),
        "text/html application/json false"
    );
    assert_eq!(send(&mut conn, "/", "X-Debug-Trace: 1\r\n").status, 403);
}

#[test]
fn format_quote_url_parse_and_bytes_on_real_requests() {
    let policy = r#"
on_http_request:
  - expressions:
      - "base64.decode(getReqHeader('x-token')[0]).size() == 5"
    actions:
      - type: custom-response
        config:
          body: "${'%s %d%%'.format([url.parse(req.url).host, 42])} ${strings.quote(string(base64.decode(getReqHeader('x-token')[0])))} ${req.url.parseUrl().raw_query}"
  - actions:
      - type: deny
"#;
    let dp = serve(policy);
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(
        send(&mut conn, "/?q=1", "X-Token: aGVsbG8=\r\n").text(),
        "app.example.com 42% \"hello\" q=1"
    );
    assert_eq!(send(&mut conn, "/", "X-Token: bm9wZQ==\r\n").status, 403);
}

#[test]
fn geo_and_ip_intelligence_come_from_the_files_the_data_plane_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    TestGeoDb::new("GeoLite2-City")
        .city(
            "127.0.0.0/8",
            &CityRecord {
                continent_code: "NA",
                continent: "North America",
                country_code: "US",
                country: "United States",
                registered_country_code: "CA",
                registered_country: "Canada",
                city: "Strongsville",
                postal_code: "44136",
                latitude: Some(41.3145),
                longitude: Some(-81.8357),
                accuracy_radius: Some(5),
                time_zone: "America/New_York",
                subdivisions: &["Ohio"],
                ..CityRecord::default()
            },
        )
        .asn(
            "127.0.0.0/8",
            &AsnRecord {
                number: 64_512,
                organization: "Loopback Networks",
            },
        )
        .write(&db);
    let categories = dir.path().join("categories");
    std::fs::create_dir(&categories).unwrap();
    std::fs::write(
        categories.join("proxy.anonymous.tor.txt"),
        "# exits\n127.0.0.1\n",
    )
    .unwrap();
    std::fs::write(categories.join("com.example.crawler.txt"), "10.0.0.0/8\n").unwrap();
    let policy = r#"
on_http_request:
  - expressions:
      - conn.client_ip.is_tor_node || 'proxy' in conn.client_ip.categories
    actions:
      - type: custom-response
        config:
          status_code: 403
          body: "${conn.geo.city} (${conn.geo.subdivision}), ${conn.geo.country_code} (${conn.geo.latitude} ${conn.geo.longitude} r${conn.geo.radius}) registered ${conn.client_ip.geo.registered_location.country}; AS${conn.client_ip.as.number} ${conn.client_ip.as.organization}; ${conn.client_ip.categories.join(',')}; blocklisted=${conn.client_ip.is_on_blocklist}"
  - actions:
      - type: custom-response
        config:
          body: "no data: '${conn.geo.city}' ${conn.client_ip.as.number} ${size(conn.client_ip.categories)} ${conn.client_ip.is_tor_node}"
"#;
    let mut dp = DataPlane::start_with(&[
        "--geoip-db",
        db.to_str().unwrap(),
        "--ip-categories",
        categories.to_str().unwrap(),
    ]);
    dp.push(vec![cloud(
        "ep_app",
        "acme",
        "http://app.example.com",
        policy,
    )]);
    let res = get(dp.http_addr(), "app.example.com", "/");
    assert_eq!(res.status, 403, "{}", res.text());
    assert_eq!(
        res.text(),
        "Strongsville (Ohio), US (41.3145 -81.8357 r5) registered Canada; AS64512 Loopback Networks; \
         proxy,proxy.anonymous,proxy.anonymous.tor; blocklisted=false"
    );
    // Without the files every such variable is empty, never an error.
    let dp = serve(policy);
    assert_eq!(
        get(dp.http_addr(), "app.example.com", "/").text(),
        "no data: '' 0 0 false"
    );
}

#[test]
fn cookies_of_requests_and_responses() {
    let backend = Backend::start(|_| {
        Some(
            b"HTTP/1.1 200 OK\r\nset-cookie: sid=s3cr3t; Path=/; Max-Age=86401; Expires=Wed, 21 Oct 2099 07:28:00 GMT; HttpOnly; Secure\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let policy = r#"
on_http_request:
  - expressions:
      - "!hasReqCookie('session')"
    actions:
      - type: custom-response
        config:
          status_code: 401
          body: no session
  - actions:
      - type: add-headers
        config:
          headers:
            x-session: ${getReqCookie('session').value}
on_http_response:
  - expressions:
      - res.cookies['sid'][0].http_only && res.cookies['sid'][0].secure
      - res.cookies['sid'][0].max_age > duration('24h')
      - res.cookies['sid'][0].expires > timestamp(time.now)
    actions:
      - type: add-headers
        config:
          headers:
            x-cookie-checked: ${res.cookies['sid'][0].value}
"#;
    let dp = serve_agent(policy, backend.addr);
    let mut conn = HttpConn::connect(dp.http_addr());
    assert_eq!(send(&mut conn, "/", "").status, 401);
    let res = send(&mut conn, "/", "Cookie: theme=dark; session=abc123\r\n");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-cookie-checked"), Some("s3cr3t"));
    assert_eq!(backend.requests()[0].header("x-session"), Some("abc123"));
}
