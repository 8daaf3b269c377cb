//! The actions of a traffic policy (SPEC §4). Each file owns one action: its config
//! type, its validation, its execution and the answer it makes. Adding an action
//! touches its file, its `mod` line and its line in [`registry!`] below.

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
mod rewrite;
pub mod set_vars;
pub mod terminate_tls;
pub mod url_rewrite;

use super::action::{PolicyAction, Verdict};
use super::results::ActionResults;
use super::Phase;
use Phase::{HttpRequest as Q, HttpResponse as R, TcpConnect as T};

/// Declares every action once: its enum variant, its type as written in documents,
/// the type in its file, and the phases it may run in.
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $ty:ty, [$($phase:ident),*]; )*) => {
        /// One action of a rule, its config parsed, checked and compiled.
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Action {
            $( $(#[$doc])* $variant($ty), )*
        }

        impl Action {
            /// Every action type, as written in documents, with the phases it may run in.
            pub const TYPES: &'static [(&'static str, &'static [Phase])] =
                &[$( ($name, &[$($phase),*]), )*];

            /// Parses the config of action `kind`, checks it and compiles it for `phase`.
            pub(crate) fn parse(
                kind: &str,
                config: serde_json::Value,
                phase: Phase,
            ) -> Result<Action, String> {
                match kind {
                    $( $name => Ok(Action::$variant(compile::<$ty>(config, phase)?)), )*
                    other => {
                        let known: Vec<_> = Self::TYPES.iter().map(|(n, _)| *n).collect();
                        Err(format!(
                            "unknown action type `{other}`; known types: {}",
                            known.join(", ")
                        ))
                    }
                }
            }

            /// The name of the action as written in documents.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Action::$variant(_) => $name, )*
                }
            }

            /// Whether the action always ends its phase.
            pub fn terminates(&self) -> bool {
                match self {
                    $( Action::$variant(a) => a.terminates(), )*
                }
            }

            /// Runs the action in an exchange.
            pub fn execute(&self, x: &mut dyn Exchange) -> Verdict<'_> {
                match self {
                    $( Action::$variant(a) => a.execute(x), )*
                }
            }
        }
    };
}

registry! {
    /// Hand the request to an internal endpoint (SPEC §5).
    ForwardInternal = "forward-internal" => forward_internal::ForwardInternal, [T, Q];
    /// Answer with a configured response.
    CustomResponse = "custom-response" => custom_response::CustomResponse, [Q, R];
    /// Refuse the request.
    Deny = "deny" => deny::Deny, [T, Q];
    /// Add headers.
    AddHeaders = "add-headers" => add_headers::AddHeaders, [Q, R];
    /// Remove headers.
    RemoveHeaders = "remove-headers" => remove_headers::RemoveHeaders, [Q, R];
    /// Set `vars.*`.
    SetVars = "set-vars" => set_vars::SetVars, [T, Q, R];
    /// Close the client connection.
    CloseConnection = "close-connection" => close_connection::CloseConnection, [T, Q];
    /// Answer with a Location.
    Redirect = "redirect" => redirect::Redirect, [Q];
    /// Rewrite the path and query.
    UrlRewrite = "url-rewrite" => url_rewrite::UrlRewrite, [Q];
    /// Allow or deny by peer address.
    RestrictIps = "restrict-ips" => restrict_ips::RestrictIps, [T, Q];
    /// Require HTTP Basic credentials.
    BasicAuth = "basic-auth" => basic_auth::BasicAuth, [Q];
    /// Limit requests per key and window.
    RateLimit = "rate-limit" => rate_limit::RateLimit, [Q];
    /// Write a structured log line.
    Log = "log" => log::Log, [T, Q, R];
    /// End TLS on a tls endpoint, then pass plain bytes on.
    TerminateTls = "terminate-tls" => terminate_tls::TerminateTls, [T];
}

impl Action {
    /// The phases this action may appear in.
    pub fn phases(&self) -> &'static [Phase] {
        let name = self.type_name();
        Self::TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, p)| p)
    }
}

/// Parses an action's config into its type and compiles it.
fn compile<A: PolicyAction>(config: serde_json::Value, phase: Phase) -> Result<A, String> {
    let config: A::Config = serde_json::from_value(config).map_err(|e| e.to_string())?;
    A::compile(config, phase)
}

use std::borrow::Cow;

use super::expr::Facts;

/// Header storage an action may edit. The data plane implements it over its parsed
/// heads; tests implement it over a plain list.
pub trait HeadersMut {
    /// Appends a header, keeping any already present.
    fn append(&mut self, name: &str, value: &str);
    /// Removes every header with this name (case-insensitive); whether there was one.
    fn remove(&mut self, name: &str) -> bool;
}

/// What an action sees of the exchange it runs in: facts to read (for expressions
/// and `${…}`), the headers of the message its phase edits, and `vars`.
pub trait Exchange {
    /// What expressions read.
    fn facts(&self) -> &dyn Facts;
    /// The headers this phase edits (request or response).
    fn headers(&mut self) -> &mut dyn HeadersMut;
    /// Sets `vars.NAME`.
    fn set_var(&mut self, name: &str, value: serde_json::Value);
    /// Replaces the request target (`/path?query`); request phase only.
    fn set_target(&mut self, target: &str);
    /// Writes one structured log line (`log`).
    fn log(&mut self, line: String);
    /// Counts this request against the counters of the running `rate-limit` action,
    /// under `key`; refused: the seconds until a request of `key` would pass.
    fn admit(&mut self, key: &[u8]) -> Result<(), u64>;
    /// Asks for TLS to end here with the running `terminate-tls` action's settings
    /// (on_tcp_connect of tls endpoints).
    fn terminate_tls(&mut self);
    /// Where the running action records what later rules read as
    /// `actions.ngrok.<action>.*`; `None` when the running policy reads no results,
    /// so that nothing is recorded (or allocated) for them.
    fn results(&mut self) -> Option<&mut ActionResults>;
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

    /// `scheme://authority`.
    pub(crate) fn origin(&self) -> String {
        use super::expr::Var;
        format!(
            "{}://{}",
            self.facts.string(Var::Scheme),
            self.facts.string(Var::Authority)
        )
    }

    /// `scheme://authority/path?query`.
    pub(crate) fn full(&self) -> String {
        format!("{}{}", self.origin(), self.target())
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

/// The default of `enforce` where an action has one: it acts on what it decides.
pub(crate) fn enforced() -> bool {
    true
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
