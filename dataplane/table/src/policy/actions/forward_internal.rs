//! `forward-internal`: hand the request (or connection) to an internal endpoint of the
//! same account, in memory (SPEC §5). The data plane does the lookup and the hop; this
//! file owns the config and its create-time checks.

use serde::Deserialize;

use crate::url::{EndpointUrl, Scheme};

/// What happens when the forward fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The client gets the error (HTTP response, or the connection closes). Default.
    #[default]
    Halt,
    /// The next action runs; the error is readable by later rules.
    Continue,
}

/// Config of `forward-internal` as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardInternalConfig {
    /// The internal URL to forward to.
    #[serde(deserialize_with = "super::scalar_string")]
    pub url: String,
    /// What to do when the forward fails.
    #[serde(default)]
    pub on_error: OnError,
}

/// `forward-internal` with its target parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardInternal {
    /// The target, an internal URL.
    pub target: EndpointUrl,
    /// What to do when the forward fails.
    pub on_error: OnError,
}

impl TryFrom<ForwardInternalConfig> for ForwardInternal {
    type Error = String;

    fn try_from(config: ForwardInternalConfig) -> Result<Self, String> {
        let target =
            EndpointUrl::parse(&config.url).map_err(|e| format!("url `{}`: {e}", config.url))?;
        if !target.is_internal() {
            return Err(format!(
                "url `{}` is not internal: forward-internal targets end in `.internal`",
                config.url
            ));
        }
        Ok(ForwardInternal {
            target,
            on_error: config.on_error,
        })
    }
}

impl ForwardInternal {
    /// Checks the target is of the forwarding endpoint's family (SPEC §5).
    pub fn validate_for(&self, from: Scheme) -> Result<(), String> {
        if self.target.scheme.family() != from.family() {
            return Err(format!(
                "a {from} endpoint cannot forward to {}: forward-internal stays within \
                 http/https or within tcp/tls",
                self.target
            ));
        }
        Ok(())
    }

    /// Whether the action always ends the phase.
    pub fn terminates(&self) -> bool {
        self.on_error == OnError::Halt
    }
}
