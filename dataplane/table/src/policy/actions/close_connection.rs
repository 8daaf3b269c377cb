//! `close-connection`: close the client connection without an answer. Terminating.

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::Phase;

/// Config of `close-connection` (none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseConnection {}

impl PolicyAction for CloseConnection {
    type Config = CloseConnection;

    fn compile(config: CloseConnection, _: Phase) -> Result<Self, String> {
        Ok(config)
    }

    fn terminates(&self) -> bool {
        true
    }

    fn execute<'p>(&'p self, _: &mut dyn Exchange) -> Verdict<'p> {
        Verdict::Close
    }
}
