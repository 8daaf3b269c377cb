//! `add-headers`: add headers to the request or response (values interpolate `${…}`);
//! `host` replaces.

use serde::{Deserialize, Deserializer};

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::Template;
use crate::policy::Phase;

/// Config of `add-headers` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddHeadersConfig {
    /// Headers to add, in the order written.
    #[serde(deserialize_with = "ordered_headers")]
    pub headers: Vec<(String, String)>,
}

/// `add-headers`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddHeaders {
    /// Names and value templates, in order.
    pub headers: Vec<(String, Template)>,
}

impl AddHeaders {
    /// Checks names and values and compiles the value templates.
    pub fn new(config: AddHeadersConfig, phase: Phase) -> Result<Self, String> {
        if config.headers.is_empty() {
            return Err("headers is empty".into());
        }
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in config.headers {
            super::check_header_name(&name)?;
            super::check_header_value(&name, &value)?;
            let template =
                Template::compile(&value, phase).map_err(|e| format!("headers.{name}: {e}"))?;
            headers.push((name, template));
        }
        Ok(AddHeaders { headers })
    }

    /// Adds the headers; a `host` header replaces the one present, since a request
    /// has exactly one Host. Values are rendered before any header changes, so every
    /// value sees the message as it arrived at this action.
    pub fn apply(&self, x: &mut dyn Exchange) {
        let values: Vec<_> = self
            .headers
            .iter()
            .map(|(_, t)| super::sanitize(t.render(x.facts())))
            .collect();
        let headers = x.headers();
        for ((name, _), value) in self.headers.iter().zip(&values) {
            if name.eq_ignore_ascii_case("host") {
                headers.remove(name);
            }
            headers.append(name, value);
        }
        if let Some(results) = x.results() {
            results.headers_added = self
                .headers
                .iter()
                .zip(values)
                .map(|((name, _), value)| (name.to_ascii_lowercase(), value.into_owned()))
                .collect();
        }
    }
}

/// Reads a `name: value` map keeping the written order; values may be strings,
/// numbers or booleans, as YAML users write them.
pub(crate) fn ordered_headers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    use serde::de::Error;
    let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            _ => Err(D::Error::custom(format!(
                "the value of header `{k}` must be a string"
            ))),
        })
        .collect()
}

impl PolicyAction for AddHeaders {
    type Config = AddHeadersConfig;

    fn compile(config: AddHeadersConfig, phase: Phase) -> Result<Self, String> {
        AddHeaders::new(config, phase)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        self.apply(x);
        Verdict::Continue
    }
}
