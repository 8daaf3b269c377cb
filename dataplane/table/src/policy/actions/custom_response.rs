//! `custom-response`: answer the request (or replace the upstream response) with a
//! status, headers and body from the config. Terminating.

use serde::Deserialize;

/// Config of `custom-response`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomResponse {
    /// The status, 200 unless given.
    #[serde(default = "default_status")]
    pub status_code: u16,
    /// Response headers in the order written.
    #[serde(default, deserialize_with = "super::add_headers::ordered_headers")]
    pub headers: Vec<(String, String)>,
    /// The body, sent as is with a Content-Length.
    #[serde(default, deserialize_with = "super::scalar_string")]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

impl CustomResponse {
    /// Checks status and headers; framing headers are the data plane's to write.
    pub fn validate(&self) -> Result<(), String> {
        check_status(self.status_code)?;
        for (name, value) in &self.headers {
            super::check_header_name(name)?;
            super::check_header_value(name, value)?;
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(format!(
                    "header `{name}` is set by innergate from the body; remove it"
                ));
            }
        }
        Ok(())
    }
}

/// A final status a policy may answer with: 200–599 (1xx are not final responses).
pub(crate) fn check_status(status: u16) -> Result<(), String> {
    if !(200..=599).contains(&status) {
        return Err(format!("status_code {status} is out of range 200-599"));
    }
    Ok(())
}
