//! Cookies as policies read them (`req.cookies`, `getReqCookie`, `res.cookies`,
//! `getResCookie`): the request's `Cookie` headers and the response's `Set-Cookie`
//! headers, parsed when an expression asks, into the documented cookie objects.
//! Request cookies have `name` and `value`; response cookies also `domain`, `path`,
//! `expires` (a timestamp, as RFC 3339 text), `max_age` (a duration, `3600s`),
//! `http_only`, `secure`, `same_site` and `unparsed_attributes`.

use serde_json::{json, Map, Value};

/// `name → [cookie, …]` in the order the headers give them.
pub(crate) fn request_cookies<'h>(headers: impl Iterator<Item = &'h str>) -> Value {
    let mut all = Map::new();
    for header in headers {
        for pair in header.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), unquote(value.trim()));
            if name.is_empty() {
                continue;
            }
            push(&mut all, name, json!({"name": name, "value": value}));
        }
    }
    Value::Object(all)
}

/// `name → [cookie, …]` from `Set-Cookie` headers; a longer path first, as the docs
/// order them.
pub(crate) fn response_cookies<'h>(headers: impl Iterator<Item = &'h str>) -> Value {
    let mut all = Map::new();
    for header in headers {
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let mut cookie = json!({
            "name": name, "value": unquote(value.trim()), "domain": "", "path": "",
            "expires": "", "max_age": "0s", "http_only": false, "secure": false,
            "same_site": "", "unparsed_attributes": {},
        });
        for attribute in parts {
            let (key, value) = match attribute.trim().split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (attribute.trim(), ""),
            };
            let field = match key.to_ascii_lowercase().as_str() {
                "domain" => ("domain", Value::from(value)),
                "path" => ("path", Value::from(value)),
                "expires" => ("expires", Value::from(http_date(value).unwrap_or_default())),
                "max-age" => (
                    "max_age",
                    Value::from(format!("{}s", value.parse::<i64>().unwrap_or(0))),
                ),
                "httponly" => ("http_only", Value::Bool(true)),
                "secure" => ("secure", Value::Bool(true)),
                "samesite" => ("same_site", Value::from(value)),
                "" => continue,
                _ => {
                    cookie["unparsed_attributes"][key] = Value::from(value);
                    continue;
                }
            };
            cookie[field.0] = field.1;
        }
        push(&mut all, name, cookie);
    }
    for list in all.values_mut() {
        if let Value::Array(items) = list {
            items.sort_by_key(|c| std::cmp::Reverse(c["path"].as_str().map_or(0, str::len)));
        }
    }
    Value::Object(all)
}

fn push(all: &mut Map<String, Value>, name: &str, cookie: Value) {
    match all.get_mut(name) {
        Some(Value::Array(list)) => list.push(cookie),
        _ => {
            all.insert(name.to_string(), Value::Array(vec![cookie]));
        }
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) as RFC 3339.
fn http_date(text: &str) -> Option<String> {
    let parsed = jiff::fmt::rfc2822::parse(text).ok()?;
    Some(parsed.timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_cookies() {
        let req = request_cookies(["a=1; session=\"xyz\"", "a=2"].into_iter());
        assert_eq!(req["session"][0]["value"], "xyz");
        assert_eq!(req["a"][1]["value"], "2");
        assert_eq!(req["a"][0]["name"], "a");
        let res = response_cookies(
            [
                "sessionId=38afes7a8; Domain=example.com; Path=/; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Max-Age=3600; Secure; HttpOnly; SameSite=Lax; Priority=High",
                "sessionId=deeper; Path=/app/long",
            ]
            .into_iter(),
        );
        let first = &res["sessionId"][0];
        assert_eq!(first["value"], "deeper", "the longer path first");
        let c = &res["sessionId"][1];
        assert_eq!(c["domain"], "example.com");
        assert_eq!(c["expires"], "2015-10-21T07:28:00Z");
        assert_eq!(c["max_age"], "3600s");
        assert_eq!(c["secure"], true);
        assert_eq!(c["http_only"], true);
        assert_eq!(c["same_site"], "Lax");
        assert_eq!(c["unparsed_attributes"]["Priority"], "High");
    }
}
