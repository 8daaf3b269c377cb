//! `set-vars`: set variables that later expressions read as `vars.NAME`; values
//! interpolate `${…}`.

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::Template;
use crate::policy::Phase;

/// Config of `set-vars` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVarsConfig {
    /// Names and values, in order: a list of single-entry maps (as the hosted docs
    /// write it) or one map.
    #[serde(deserialize_with = "entries")]
    pub vars: Vec<(String, String)>,
}

/// Reads `vars` in either form. Values are text: strings, and numbers and booleans as
/// written; a list, map or null is refused (vars hold strings here).
fn entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    let text = |name: &str, value: Value| match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(D::Error::custom(format!(
            "vars.{name}: innergate's vars hold strings, numbers and booleans, not {}",
            match other {
                Value::Null => "null",
                Value::Array(_) => "a list",
                _ => "a map",
            }
        ))),
    };
    match Value::deserialize(d)? {
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| Ok((k.clone(), text(&k, v)?)))
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) if map.len() == 1 => {
                    let (k, v) = map.into_iter().next().expect("one entry");
                    Ok((k.clone(), text(&k, v)?))
                }
                _ => Err(D::Error::custom(format!(
                    "vars[{i}]: each entry of the list is a map of exactly one name and value"
                ))),
            })
            .collect(),
        _ => Err(D::Error::custom(
            "vars is a list of `name: value` maps (or one map of names to values)",
        )),
    }
}

/// `set-vars`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetVars {
    /// Names and value templates, in order.
    pub vars: Vec<(String, Template)>,
}

impl SetVars {
    /// Checks the names and compiles the values.
    pub fn new(config: SetVarsConfig, phase: Phase) -> Result<Self, String> {
        if config.vars.is_empty() {
            return Err("vars is empty".into());
        }
        let mut vars = Vec::with_capacity(config.vars.len());
        for (name, value) in config.vars {
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`{name}` is not a variable name (letters, digits, _)"
                ));
            }
            let template =
                Template::compile(&value, phase).map_err(|e| format!("vars.{name}: {e}"))?;
            vars.push((name, template));
        }
        Ok(SetVars { vars })
    }

    /// Sets the variables in order; each value sees those set before it.
    pub fn apply(&self, x: &mut dyn Exchange) {
        for (name, template) in &self.vars {
            let value = template.render(x.facts()).into_owned();
            x.set_var(name, value);
        }
    }
}

impl PolicyAction for SetVars {
    type Config = SetVarsConfig;

    fn compile(config: SetVarsConfig, phase: Phase) -> Result<Self, String> {
        SetVars::new(config, phase)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        self.apply(x);
        Verdict::Continue
    }
}
