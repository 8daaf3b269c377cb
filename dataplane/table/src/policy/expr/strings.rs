//! String functions with a grammar of their own: `string.format` (printf-style, the
//! clauses the macros page lists), `strings.quote` (Go's `strconv.Quote`) and
//! `url.parse` (the fields of Go's `net/url.URL` the docs show).

use serde_json::Value;

/// `template.format(args)`: `%s %d %f %e %b %x %X %o` and `%%`, with a precision
/// for `%f`/`%e` (`%.2f`); `None` when a clause does not fit its argument or the
/// arguments run out.
pub(super) fn format(template: &str, args: &[Value]) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut args = args.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            precision = Some(digits.parse::<usize>().ok()?.min(64));
        }
        let clause = chars.next()?;
        if clause == '%' {
            out.push('%');
            continue;
        }
        let arg = args.next()?;
        match clause {
            's' => out.push_str(&text(arg)),
            'd' => out.push_str(&arg.as_i64()?.to_string()),
            'f' => out.push_str(&format!("{:.*}", precision.unwrap_or(6), number(arg)?)),
            'e' => out.push_str(&scientific(number(arg)?, precision.unwrap_or(6))),
            'b' => match arg {
                Value::Bool(b) => out.push(if *b { '1' } else { '0' }),
                _ => out.push_str(&radix(arg.as_i64()?, 2)),
            },
            'o' => out.push_str(&radix(arg.as_i64()?, 8)),
            'x' | 'X' => {
                let hex = match arg {
                    Value::String(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                    _ => radix(arg.as_i64()?, 16),
                };
                out.push_str(&if clause == 'X' {
                    hex.to_ascii_uppercase()
                } else {
                    hex
                });
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A value as `%s` prints it: strings bare, the rest as their JSON text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// `n` in base `base`, with a `-` for negatives.
fn radix(n: i64, base: u32) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let magnitude = n.unsigned_abs();
    let digits = match base {
        2 => format!("{magnitude:b}"),
        8 => format!("{magnitude:o}"),
        _ => format!("{magnitude:x}"),
    };
    format!("{sign}{digits}")
}

/// `x` as `d.ddddde±XX` with `precision` decimals, as printf's `%e` writes it.
fn scientific(x: f64, precision: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    // Rust's `{:e}` finds the exponent and rounds; the sign and two-digit exponent
    // are printf's.
    let written = format!("{x:.precision$e}");
    let (mantissa, exponent) = written.split_once('e').unwrap_or((&written, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

/// `strings.quote(s)`: `s` in double quotes with Go's escapes, safe to print.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `url.parse(s)`: the parts of a URL, under the names of Go's `net/url.URL`
/// (`scheme`, `user`, `host` with its port, `path`, `raw_query`, `fragment`,
/// `opaque`); `None` for what is not a URL (a bad scheme, a space in the host).
pub(super) fn parse_url(s: &str) -> Option<Value> {
    let (rest, fragment) = s.split_once('#').unwrap_or((s, ""));
    let (scheme, rest) = match rest.split_once(':') {
        Some((scheme, rest))
            if scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (scheme.to_ascii_lowercase(), rest)
        }
        _ => (String::new(), rest),
    };
    let (rest, raw_query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut user, mut host, mut path, mut opaque) = ("", "", "", "");
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        path = &after[end..];
        match authority.rsplit_once('@') {
            Some((u, h)) => (user, host) = (u, h),
            None => host = authority,
        }
        if host.contains(' ') {
            return None;
        }
    } else if !scheme.is_empty() && !rest.starts_with('/') {
        opaque = rest;
    } else {
        path = rest;
    }
    Some(serde_json::json!({
        "scheme": scheme,
        "opaque": opaque,
        "user": user,
        "host": host,
        "path": path,
        "raw_query": raw_query,
        "fragment": fragment,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_as_the_macros_page_shows() {
        let f = |t: &str, args: Value| format(t, args.as_array().unwrap());
        assert_eq!(f("hello %s", json!(["world"])).unwrap(), "hello world");
        assert_eq!(f("integer: %d", json!([42])).unwrap(), "integer: 42");
        assert_eq!(f("%f", json!([1.5])).unwrap(), "1.500000");
        assert_eq!(f("%.2f", json!([7.12345])).unwrap(), "7.12");
        assert_eq!(f("%e", json!([1234.5678])).unwrap(), "1.234568e+03");
        assert_eq!(f("%.1e", json!([0.00012])).unwrap(), "1.2e-04");
        assert_eq!(f("%x", json!([26])).unwrap(), "1a");
        assert_eq!(f("%X", json!([26])).unwrap(), "1A");
        assert_eq!(f("%x", json!(["hi"])).unwrap(), "6869");
        assert_eq!(f("%o", json!([8])).unwrap(), "10");
        assert_eq!(f("binary: %b", json!([5])).unwrap(), "binary: 101");
        assert_eq!(f("bool: %b", json!([true])).unwrap(), "bool: 1");
        assert_eq!(f("100%% %s", json!([[1, 2]])).unwrap(), "100% [1,2]");
        assert_eq!(f("%d", json!(["x"])), None);
        assert_eq!(f("%s %s", json!(["one"])), None);
        assert_eq!(f("%q", json!(["x"])), None);
        assert_eq!(f("trailing %", json!([])), None);
    }

    #[test]
    fn quote_as_go_does() {
        assert_eq!(
            quote("single-quote with \"double quote\""),
            "\"single-quote with \\\"double quote\\\"\""
        );
        assert_eq!(
            quote("two escape sequences \u{07}\n"),
            "\"two escape sequences \\a\\n\""
        );
        assert_eq!(quote("é\u{1}"), "\"é\\x01\"");
    }

    #[test]
    fn parse_url_in_go_fields() {
        let u = parse_url("https://user:pw@ngrok.com:8443/a/b?x=1#top").unwrap();
        assert_eq!(u["scheme"], "https");
        assert_eq!(u["user"], "user:pw");
        assert_eq!(u["host"], "ngrok.com:8443");
        assert_eq!(u["path"], "/a/b");
        assert_eq!(u["raw_query"], "x=1");
        assert_eq!(u["fragment"], "top");
        let u = parse_url("https://ngrok.com").unwrap();
        assert_eq!(
            (u["host"].as_str(), u["path"].as_str()),
            (Some("ngrok.com"), Some(""))
        );
        assert_eq!(parse_url("mailto:a@b.c").unwrap()["opaque"], "a@b.c");
        assert_eq!(parse_url("/just/a/path?q").unwrap()["path"], "/just/a/path");
        assert_eq!(parse_url("http://a b/"), None);
    }
}
