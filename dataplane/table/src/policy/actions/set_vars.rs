//! `set-vars`: set variables that later expressions read as `vars.NAME`. Values are
//! of any type (strings, numbers, bools, null, lists, maps); strings interpolate
//! `${…}`.

use serde::Deserialize;
use serde_json::Value;

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
    pub vars: Vec<(String, Value)>,
}

/// Reads `vars` in either form; values are any YAML/JSON value.
fn entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, Value)>, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Object(map) => Ok(map.into_iter().collect()),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) if map.len() == 1 => {
                    Ok(map.into_iter().next().expect("one entry"))
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

/// Where a variable's value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum VarSource {
    /// A string, `${…}` interpolated; exactly one `${…}` and nothing else keeps the
    /// expression's type (`${int(50.5)}` is the number 50), as the docs say.
    Template(Template),
    /// A number, bool, null, list or map, as written.
    Literal(Value),
}

/// `set-vars`, compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct SetVars {
    /// Names and values, in order.
    pub vars: Vec<(String, VarSource)>,
}

impl Eq for SetVars {}

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
            let source = match value {
                Value::String(text) => VarSource::Template(
                    Template::compile(&text, phase).map_err(|e| format!("vars.{name}: {e}"))?,
                ),
                other => VarSource::Literal(other),
            };
            vars.push((name, source));
        }
        Ok(SetVars { vars })
    }

    /// Sets the variables in order; each value sees those set before it.
    pub fn apply(&self, x: &mut dyn Exchange) {
        for (name, source) in &self.vars {
            let value = match source {
                VarSource::Literal(value) => value.clone(),
                VarSource::Template(template) => match template.single_expression() {
                    Some(expr) => match expr.eval(x.facts()) {
                        Ok(v) => v.to_json(x.facts()),
                        // An expression that fails sets the variable to null.
                        Err(_) => Value::Null,
                    },
                    None => Value::String(template.render(x.facts()).into_owned()),
                },
            };
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
