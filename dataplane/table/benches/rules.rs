//! The per-request cost of evaluating 10 typical policy rules (comparisons on method,
//! path, host and headers, one regex, one list), as BENCH.md's policy scenario uses,
//! and of two macro-heavy rules (the hosted docs' macros: CIDR lists, header getters,
//! string functions that allocate).
//!
//!     cargo bench -p innergate-table --bench rules

use std::hint::black_box;
use std::time::Instant;

use innergate_table::policy::expr::{Facts, MapVar, Var};
use innergate_table::policy::{Phase, Policy};

struct Request {
    headers: Vec<(&'static str, &'static str)>,
}

impl Facts for Request {
    fn string(&self, var: Var) -> &str {
        match var {
            Var::Method => "GET",
            Var::Host => "api.example.com",
            Var::Path => "/api/v2/orders/12345",
            Var::Query => "expand=items",
            Var::Scheme => "http",
            Var::ClientIp => "203.0.113.7",
            _ => "",
        }
    }
    fn int(&self, var: Var) -> i64 {
        match var {
            Var::ContentLength => 0,
            _ => 0,
        }
    }
    fn count(&self, _: MapVar, key: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(key))
            .count()
    }
    fn value(&self, _: MapVar, key: &str, index: usize) -> Option<&str> {
        let mut matching = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(key));
        matching.nth(index).map(|(_, v)| *v)
    }
    fn map_size(&self, _: MapVar) -> usize {
        self.headers.len()
    }
    fn user_var(&self, _: &str) -> Option<&serde_json::Value> {
        None
    }
}

const RULES: [&str; 10] = [
    "req.method == 'POST' && req.url.path == '/login'",
    "req.url.path.startsWith('/admin')",
    "!('user-agent' in req.headers)",
    "req.headers['x-api-version'][0] == '1'",
    "req.host.endsWith('.internal-tools.example.com')",
    "req.url.path.matches('^/api/v[0-9]+/legacy/')",
    "req.method in ['PUT', 'DELETE', 'PATCH']",
    "req.content_length > 1048576",
    "has(req.headers.x_debug)",
    "req.headers['accept'][0].contains('text/html') && req.url.path == '/'",
];

const MACRO_RULES: [&str; 2] = [
    "inCidrRanges(conn.client_ip, ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']) || getReqHeader('User-Agent')[0].lower().contains('bot')",
    "req.url.path.split('/')[1] == 'api' && getQueryParam('expand').join(',').upperAscii() == 'ITEMS'",
];

fn main() {
    measure("10 rules", &RULES);
    measure("2 macro-heavy rules", &MACRO_RULES);
}

fn measure(what: &str, rules: &[&str]) {
    let mut text = String::from("on_http_request:\n");
    for rule in rules {
        text.push_str(&format!(
            "  - expressions: [\"{rule}\"]\n    actions: [{{type: add-headers, config: {{headers: {{x-r: '1'}}}}}}]\n"
        ));
    }
    let policy = Policy::parse(&text).expect("the benchmark policy compiles");
    assert_eq!(policy.phase(Phase::HttpRequest).len(), rules.len());
    let request = Request {
        headers: vec![
            ("host", "api.example.com"),
            ("user-agent", "wrk/4.2"),
            ("accept", "application/json"),
            ("x-api-version", "2"),
            ("accept-encoding", "gzip"),
            ("connection", "keep-alive"),
        ],
    };
    let rules = policy.phase(Phase::HttpRequest);
    let run = |n: u64| {
        let start = Instant::now();
        let mut matched = 0u64;
        for _ in 0..n {
            for rule in rules {
                matched += u64::from(rule.applies(black_box(&request)));
            }
        }
        (start.elapsed(), black_box(matched))
    };
    run(100_000); // warm up
    let n = 2_000_000;
    let (elapsed, matched) = run(n);
    let per_request = elapsed.as_nanos() as f64 / n as f64;
    println!(
        "{what}: {per_request:.0} ns per request ({:.1} ns per rule), {} matches per request",
        per_request / rules.len() as f64,
        matched / n
    );
}
