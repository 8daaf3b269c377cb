//! `basic-auth`: require HTTP Basic credentials; missing or wrong ones get 401 with
//! `WWW-Authenticate: Basic realm="…"`. Ends the phase when it refuses.

use base64::Engine;
use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::MapVar;
use crate::policy::response::LocalResponse;
use crate::policy::Phase;

/// Config of `basic-auth` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Accepted `user:password` pairs.
    pub credentials: Vec<String>,
    /// The realm shown to the client.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// `false`: check and record the result (`actions.ngrok.basic_auth.*`) but let
    /// the request pass.
    #[serde(default = "super::enforced")]
    pub enforce: bool,
}

fn default_realm() -> String {
    "innergate".into()
}

/// `basic-auth`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    credentials: Vec<String>,
    /// The realm.
    pub realm: String,
    /// `WWW-Authenticate` of its 401, made once.
    challenge: String,
    enforce: bool,
}

impl BasicAuth {
    /// Checks the pairs and the realm.
    pub fn new(config: BasicAuthConfig) -> Result<Self, String> {
        if config.credentials.is_empty() {
            return Err("credentials is empty".into());
        }
        for c in &config.credentials {
            match c.split_once(':') {
                Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {}
                _ => return Err("credentials are `user:password` with neither empty".into()),
            }
        }
        if config.realm.contains(['"', '\\', '\r', '\n']) {
            return Err("realm may not contain quotes, backslashes or line breaks".into());
        }
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", config.realm);
        Ok(BasicAuth {
            credentials: config.credentials,
            realm: config.realm,
            challenge,
            enforce: config.enforce,
        })
    }

    /// What the request presents, checked: (user name, accepted), or `None` when it
    /// carries no Basic credentials.
    pub fn check(&self, x: &dyn Exchange) -> Option<(String, bool)> {
        let facts = x.facts();
        let header = facts.value(MapVar::RequestHeaders, "authorization", 0)?;
        let (scheme, token) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()?;
        // The first colon separates the user from the password (RFC 7617).
        let user = decoded.split(|b| *b == b':').next().unwrap_or(&[]);
        let user = String::from_utf8_lossy(user).into_owned();
        // Compare with every pair, in time that does not depend on where they differ.
        let accepted = self
            .credentials
            .iter()
            .fold(false, |ok, c| ok | constant_time_eq(c.as_bytes(), &decoded));
        Some((user, accepted))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The code of its refusal.
pub const UNAUTHORIZED: &str = "ERR_IG_3302";

impl PolicyAction for BasicAuth {
    type Config = BasicAuthConfig;

    fn compile(config: BasicAuthConfig, _: Phase) -> Result<Self, String> {
        BasicAuth::new(config)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        let checked = self.check(x);
        let authorized = matches!(checked, Some((_, true)));
        if let Some(results) = x.results() {
            let result = &mut results.basic_auth;
            result.presented = checked.is_some();
            result.authorized = authorized;
            result.username = checked.map(|(user, _)| user).unwrap_or_default();
        }
        if authorized || !self.enforce {
            return Verdict::Continue;
        }
        Verdict::Respond(
            LocalResponse::refusal(401, UNAUTHORIZED, "authentication required\n")
                .header("www-authenticate", self.challenge.as_str()),
        )
    }
}
