//! `custom-response`: answer the request (or replace the upstream response) with a
//! status, headers and body from the config; headers and body interpolate `${…}`.
//! Terminating.

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::Template;
use crate::policy::response::LocalResponse;
use crate::policy::Phase;

/// Config of `custom-response` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomResponseConfig {
    /// The status, 200 unless given.
    #[serde(default = "default_status")]
    pub status_code: u16,
    /// Response headers in the order written.
    #[serde(default, deserialize_with = "super::add_headers::ordered_headers")]
    pub headers: Vec<(String, String)>,
    /// The body, sent with a Content-Length.
    #[serde(default, deserialize_with = "super::scalar_string")]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

/// `custom-response`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomResponse {
    /// The status.
    pub status_code: u16,
    /// Header names and value templates.
    pub headers: Vec<(String, Template)>,
    /// The body template.
    pub body: Template,
}

impl CustomResponse {
    /// Checks status and headers and compiles the templates for `phase`.
    pub fn new(config: CustomResponseConfig, phase: Phase) -> Result<Self, String> {
        check_status(config.status_code)?;
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in config.headers {
            super::check_header_name(&name)?;
            super::check_header_value(&name, &value)?;
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(format!(
                    "header `{name}` is set by innergate from the body; remove it"
                ));
            }
            let template =
                Template::compile(&value, phase).map_err(|e| format!("headers.{name}: {e}"))?;
            headers.push((name, template));
        }
        let body = Template::compile(&config.body, phase).map_err(|e| format!("body: {e}"))?;
        Ok(CustomResponse {
            status_code: config.status_code,
            headers,
            body,
        })
    }
}

/// A final status a policy may answer with: 200–599 (1xx are not final responses).
pub(crate) fn check_status(status: u16) -> Result<(), String> {
    if !(200..=599).contains(&status) {
        return Err(format!("status_code {status} is out of range 200-599"));
    }
    Ok(())
}

impl PolicyAction for CustomResponse {
    type Config = CustomResponseConfig;

    fn compile(config: CustomResponseConfig, phase: Phase) -> Result<Self, String> {
        CustomResponse::new(config, phase)
    }

    fn terminates(&self) -> bool {
        true
    }

    /// Renders the answer against the exchange it ends: the request and, in
    /// on_http_response, the response it replaces.
    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        let facts = x.facts();
        let mut response = LocalResponse::new(self.status_code).body(self.body.render(facts));
        for (name, value) in &self.headers {
            response = response.header(name, super::sanitize(value.render(facts)));
        }
        Verdict::Respond(response)
    }
}
