//! `redirect`: answer with a Location made from the request URL
//! (`scheme://authority/path?query`) by [`super::rewrite`]: `from`'s matches are
//! replaced by `to` (both interpolate `${…}`), or without `from` the URL becomes `to`.
//! A Location that starts with `/` gets the request's scheme and authority. Ends the
//! phase when it redirects; a `from` that does not match, or a URL that comes out
//! unchanged, lets the request go on.

use serde::Deserialize;

use super::rewrite::{Outcome, Rewrite, BAD_PATTERN};
use super::{Exchange, Url};
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::Template;
use crate::policy::response::LocalResponse;
use crate::policy::Phase;

/// Config of `redirect` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Which URLs to redirect; all when absent.
    #[serde(default)]
    pub from: Option<String>,
    /// Where to.
    #[serde(deserialize_with = "super::scalar_string")]
    pub to: String,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default = "default_status")]
    pub status_code: u16,
    /// Extra response headers.
    #[serde(default, deserialize_with = "super::add_headers::ordered_headers")]
    pub headers: Vec<(String, String)>,
}

fn default_status() -> u16 {
    302
}

/// `redirect`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    rewrite: Rewrite,
    /// The status.
    pub status_code: u16,
    /// Extra header names and value templates.
    pub headers: Vec<(String, Template)>,
}

impl Redirect {
    /// Checks the status, compiles the regex and the templates.
    pub fn new(config: RedirectConfig, phase: Phase) -> Result<Self, String> {
        if !matches!(config.status_code, 301 | 302 | 303 | 307 | 308) {
            return Err(format!(
                "status_code {} is not a redirect: use 301, 302, 303, 307 or 308",
                config.status_code
            ));
        }
        let rewrite = Rewrite::new(config.from.as_deref(), &config.to, phase)?;
        let mut headers = Vec::new();
        for (name, value) in config.headers {
            super::check_header_name(&name)?;
            super::check_header_value(&name, &value)?;
            let t = Template::compile(&value, phase).map_err(|e| format!("headers.{name}: {e}"))?;
            headers.push((name, t));
        }
        Ok(Redirect {
            rewrite,
            status_code: config.status_code,
            headers,
        })
    }

    /// Whether it redirects every request (no `from`).
    pub fn always(&self) -> bool {
        self.rewrite.replaces_all()
    }

    /// The Location for this request, or `None` when it does not redirect; records
    /// the result.
    pub fn location(&self, x: &mut dyn Exchange) -> Option<String> {
        let url = Url::of(x.facts());
        let (origin, full) = (url.origin(), url.full());
        let outcome = self.rewrite.apply(x.facts(), &full);
        match outcome {
            Outcome::Unchanged => None,
            Outcome::Failed(message) => {
                if let Some(results) = x.results() {
                    results.redirect.error = (BAD_PATTERN, message);
                }
                None
            }
            Outcome::Rewritten { url: to, matches } => {
                let location = if to.starts_with('/') && !to.starts_with("//") {
                    format!("{origin}{to}")
                } else {
                    to
                };
                let location = percent_encode_unsafe(&location);
                if let Some(results) = x.results() {
                    let result = &mut results.redirect;
                    result.url.clone_from(&location);
                    result.matches = matches;
                    result.error = ("", String::new());
                }
                Some(location)
            }
        }
    }
}

/// Percent-encodes what may not stand in a Location: controls, spaces and non-ASCII
/// (an interpolated `San Francisco` becomes `San%20Francisco`).
fn percent_encode_unsafe(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x21..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl PolicyAction for Redirect {
    type Config = RedirectConfig;

    fn compile(config: RedirectConfig, phase: Phase) -> Result<Self, String> {
        Redirect::new(config, phase)
    }

    /// Without `from`, every request is redirected.
    fn terminates(&self) -> bool {
        self.always()
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        let Some(location) = self.location(x) else {
            return Verdict::Continue;
        };
        let facts = x.facts();
        let mut response = LocalResponse::new(self.status_code).header("location", location);
        for (name, value) in &self.headers {
            response = response.header(name, super::sanitize(value.render(facts)));
        }
        Verdict::Respond(response)
    }
}
