//! `deny`: refuse the request (tcp: close the connection). Terminating.

use serde::Deserialize;

/// Config of `deny`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    /// The status of the refusal, 403 unless given.
    #[serde(default = "default_status")]
    pub status_code: u16,
}

fn default_status() -> u16 {
    403
}

impl Deny {
    /// Checks the status is a final HTTP status.
    pub fn validate(&self) -> Result<(), String> {
        super::custom_response::check_status(self.status_code)
    }
}
