//! `close-connection`: close the client connection without an answer. Terminating.

use serde::Deserialize;

/// Config of `close-connection` (none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseConnection {}
