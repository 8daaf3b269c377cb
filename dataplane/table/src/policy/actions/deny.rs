//! `deny`: refuse the request (tcp: close the connection). Terminating.

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::response::LocalResponse;
use crate::policy::Phase;

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

/// The code of its refusal.
pub const DENIED: &str = "ERR_IG_3300";

impl PolicyAction for Deny {
    type Config = Deny;

    fn compile(config: Deny, _: Phase) -> Result<Self, String> {
        config.validate()?;
        Ok(config)
    }

    fn terminates(&self) -> bool {
        true
    }

    fn execute<'p>(&'p self, _: &mut dyn Exchange) -> Verdict<'p> {
        Verdict::Respond(LocalResponse::refusal(
            self.status_code,
            DENIED,
            "denied by traffic policy\n",
        ))
    }
}
