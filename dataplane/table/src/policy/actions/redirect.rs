//! `redirect`: answer with a Location. `from` (a regex, optional) is matched against
//! the request URL (`scheme://host/path?query`); `to` interpolates `${…}` and the
//! regex captures `$1`, `${name}`. Ends the phase when it redirects; a `from` that
//! does not match lets the request go on.

use serde::Deserialize;

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
#[derive(Clone, Debug)]
pub struct Redirect {
    from: Option<regex::Regex>,
    to: Template,
    /// The status.
    pub status_code: u16,
    /// Extra header names and value templates.
    pub headers: Vec<(String, Template)>,
}

impl PartialEq for Redirect {
    fn eq(&self, other: &Self) -> bool {
        self.from.as_ref().map(regex::Regex::as_str)
            == other.from.as_ref().map(regex::Regex::as_str)
            && self.to == other.to
            && self.status_code == other.status_code
            && self.headers == other.headers
    }
}

impl Eq for Redirect {}

impl Redirect {
    /// Checks the status, compiles the regex and the templates.
    pub fn new(config: RedirectConfig, phase: Phase) -> Result<Self, String> {
        if !matches!(config.status_code, 301 | 302 | 303 | 307 | 308) {
            return Err(format!(
                "status_code {} is not a redirect: use 301, 302, 303, 307 or 308",
                config.status_code
            ));
        }
        let from = config
            .from
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| format!("from: invalid regex: {e}"))?;
        let to = Template::compile(&config.to, phase).map_err(|e| format!("to: {e}"))?;
        let mut headers = Vec::new();
        for (name, value) in config.headers {
            super::check_header_name(&name)?;
            super::check_header_value(&name, &value)?;
            let t = Template::compile(&value, phase).map_err(|e| format!("headers.{name}: {e}"))?;
            headers.push((name, t));
        }
        Ok(Redirect {
            from,
            to,
            status_code: config.status_code,
            headers,
        })
    }

    /// Whether it redirects every request (no `from`).
    pub fn always(&self) -> bool {
        self.from.is_none()
    }

    /// The Location for this request, or `None` when `from` does not match.
    pub fn location(&self, x: &dyn Exchange) -> Option<String> {
        let url = Url::of(x.facts()).full();
        let rendered = self.to.render(x.facts());
        let location = match &self.from {
            None => rendered.into_owned(),
            Some(from) => {
                let captures = from.captures(&url)?;
                let mut out = String::new();
                captures.expand(&rendered, &mut out);
                out
            }
        };
        Some(super::sanitize(location.into()).into_owned())
    }
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
