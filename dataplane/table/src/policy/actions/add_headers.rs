//! `add-headers`: add headers to the request or response; `host` replaces.

use serde::{Deserialize, Deserializer};

use super::HeadersMut;

/// Config of `add-headers`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddHeaders {
    /// Headers to add, in the order written.
    #[serde(deserialize_with = "ordered_headers")]
    pub headers: Vec<(String, String)>,
}

impl AddHeaders {
    /// Checks names and values are sendable.
    pub fn validate(&self) -> Result<(), String> {
        if self.headers.is_empty() {
            return Err("headers is empty".into());
        }
        for (name, value) in &self.headers {
            super::check_header_name(name)?;
            super::check_header_value(name, value)?;
        }
        Ok(())
    }

    /// Adds the headers; a `host` header replaces the one present, since a request
    /// has exactly one Host.
    pub fn apply(&self, headers: &mut impl HeadersMut) {
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("host") {
                headers.remove(name);
            }
            headers.append(name, value);
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
