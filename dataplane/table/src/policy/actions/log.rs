//! `log`: write one structured line per hit, with interpolated metadata.

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::{Template, Var};
use crate::policy::Phase;

/// Config of `log` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Names and values (interp), in order.
    #[serde(default, deserialize_with = "super::add_headers::ordered_headers")]
    pub metadata: Vec<(String, String)>,
}

/// `log`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    metadata: Vec<(String, Template)>,
    phase: Phase,
}

impl Log {
    /// Compiles the metadata templates.
    pub fn new(config: LogConfig, phase: Phase) -> Result<Self, String> {
        let mut metadata = Vec::with_capacity(config.metadata.len());
        for (name, value) in config.metadata {
            let t =
                Template::compile(&value, phase).map_err(|e| format!("metadata.{name}: {e}"))?;
            metadata.push((name, t));
        }
        Ok(Log { metadata, phase })
    }

    /// The metadata, rendered for this exchange.
    pub fn metadata(&self, x: &dyn Exchange) -> Vec<(String, String)> {
        let facts = x.facts();
        self.metadata
            .iter()
            .map(|(name, template)| (name.clone(), template.render(facts).into_owned()))
            .collect()
    }

    /// The line: a JSON object with the endpoint, the phase and the metadata.
    pub fn line(&self, x: &dyn Exchange, rendered: &[(String, String)]) -> String {
        let facts = x.facts();
        let metadata: serde_json::Map<String, serde_json::Value> = rendered
            .iter()
            .map(|(name, value)| (name.clone(), value.clone().into()))
            .collect();
        serde_json::json!({
            "event": "policy_log",
            "endpoint_id": facts.string(Var::EndpointId),
            "phase": self.phase.key(),
            "metadata": metadata,
        })
        .to_string()
    }
}

impl PolicyAction for Log {
    type Config = LogConfig;

    fn compile(config: LogConfig, phase: Phase) -> Result<Self, String> {
        Log::new(config, phase)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        let metadata = self.metadata(x);
        let line = self.line(x, &metadata);
        x.log(line);
        if let Some(results) = x.results() {
            results.log_metadata = metadata;
        }
        Verdict::Continue
    }
}
