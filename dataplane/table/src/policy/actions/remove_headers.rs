//! `remove-headers`: remove headers from the request or response.

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::Phase;

/// Config of `remove-headers`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveHeaders {
    /// Names of the headers to remove (case-insensitive).
    pub headers: Vec<String>,
}

impl RemoveHeaders {
    /// Checks the names are header names.
    pub fn validate(&self) -> Result<(), String> {
        if self.headers.is_empty() {
            return Err("headers is empty".into());
        }
        self.headers
            .iter()
            .try_for_each(|n| super::check_header_name(n))
    }

    /// Removes every header named in the config.
    pub fn apply(&self, x: &mut dyn Exchange) {
        let headers = x.headers();
        let removed: Vec<&String> = self.headers.iter().filter(|n| headers.remove(n)).collect();
        if let Some(results) = x.results() {
            results.headers_removed = removed.into_iter().cloned().collect();
        }
    }
}

impl PolicyAction for RemoveHeaders {
    type Config = RemoveHeaders;

    fn compile(config: RemoveHeaders, _: Phase) -> Result<Self, String> {
        config.validate()?;
        Ok(config)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        self.apply(x);
        Verdict::Continue
    }
}
