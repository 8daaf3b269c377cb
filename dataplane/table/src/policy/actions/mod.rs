//! The actions of a traffic policy (SPEC §4). Each file owns one action: its config
//! type, its validation and its execution. Adding an action touches its file and the
//! registry in [`super::action`].

pub mod add_headers;
pub mod basic_auth;
pub mod close_connection;
pub mod custom_response;
pub mod deny;
pub mod forward_internal;
pub mod log;
pub mod rate_limit;
pub mod redirect;
pub mod remove_headers;
pub mod restrict_ips;
pub mod set_vars;
pub mod terminate_tls;
pub mod url_rewrite;

use std::borrow::Cow;

use super::expr::Facts;

/// Header storage an action may edit. The data plane implements it over its parsed
/// heads; tests implement it over a plain list.
pub trait HeadersMut {
    /// Appends a header, keeping any already present.
    fn append(&mut self, name: &str, value: &str);
    /// Removes every header with this name (case-insensitive).
    fn remove(&mut self, name: &str);
}

/// What an action sees of the exchange it runs in: facts to read (for expressions
/// and `${…}`), the headers of the message its phase edits, and `vars`.
pub trait Exchange {
    /// What expressions read.
    fn facts(&self) -> &dyn Facts;
    /// The headers this phase edits (request or response).
    fn headers(&mut self) -> &mut dyn HeadersMut;
    /// Sets `vars.NAME`.
    fn set_var(&mut self, name: &str, value: String);
    /// Replaces the request target (`/path?query`); request phase only.
    fn set_target(&mut self, target: &str);
    /// Writes one structured log line (`log`).
    fn log(&mut self, line: String);
}

/// The request URL as policies see it, built from the facts.
pub(crate) struct Url<'f> {
    facts: &'f dyn Facts,
}

impl<'f> Url<'f> {
    pub(crate) fn of(facts: &'f dyn Facts) -> Self {
        Url { facts }
    }

    /// `/path?query`.
    pub(crate) fn target(&self) -> String {
        use super::expr::Var;
        let (path, query) = (self.facts.string(Var::Path), self.facts.string(Var::Query));
        if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        }
    }

    /// `scheme://host/path?query`.
    pub(crate) fn full(&self) -> String {
        use super::expr::Var;
        format!(
            "{}://{}{}",
            self.facts.string(Var::Scheme),
            self.facts.string(Var::Host),
            self.target()
        )
    }
}

/// Drops CR, LF and NUL from an interpolated value, so request data can never split
/// a header.
pub fn sanitize(value: Cow<'_, str>) -> Cow<'_, str> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        Cow::Owned(
            value
                .chars()
                .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
                .collect(),
        )
    } else {
        value
    }
}

/// Reads a string field that YAML users may write as a bare number or boolean
/// (`body: 404`), keeping the text they meant.
pub(crate) fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match <serde_json::Value as serde::Deserialize>::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(D::Error::custom(format!(
            "expected a string, found {other}"
        ))),
    }
}

/// Checks that `name` is a valid HTTP field name (RFC 9110 token).
pub(crate) fn check_header_name(name: &str) -> Result<(), String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    Ok(())
}

/// Checks that `value` can be sent as an HTTP field value (no CR, LF or NUL).
pub(crate) fn check_header_value(name: &str, value: &str) -> Result<(), String> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!(
            "the value of header `{name}` contains CR, LF or NUL"
        ));
    }
    Ok(())
}
