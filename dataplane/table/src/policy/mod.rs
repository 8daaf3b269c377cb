//! Traffic policies (SPEC §4): documents in YAML or JSON, parsed into phases of rules
//! of actions. Parsing checks each action on its own; [`Policy::validate_for`] checks
//! the policy against the endpoint that carries it.

pub mod action;
pub mod actions;
pub mod cidr;
pub mod expr;
pub mod response;
pub mod results;

use std::fmt;

use serde_json::Value;

pub use action::{ActionId, ForwardTarget, PolicyAction, Verdict};
pub use actions::Action;
pub use expr::{Expression, Facts};
pub use response::{LocalResponse, ERROR_CODE_HEADER};

use crate::url::{EndpointUrl, Family};

/// A phase of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// When a TCP connection is accepted.
    TcpConnect,
    /// When an HTTP request head has been read.
    HttpRequest,
    /// When a response head is ready to go to the client.
    HttpResponse,
}

impl Phase {
    /// The phase's key in documents.
    pub fn key(self) -> &'static str {
        match self {
            Phase::TcpConnect => "on_tcp_connect",
            Phase::HttpRequest => "on_http_request",
            Phase::HttpResponse => "on_http_response",
        }
    }

    const ALL: [Phase; 3] = [Phase::TcpConnect, Phase::HttpRequest, Phase::HttpResponse];
}

/// One rule: when all its expressions hold, its actions run in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// An optional name, used in logs and errors.
    pub name: Option<String>,
    /// Conditions, all of which must hold; none means always.
    pub expressions: Vec<Expression>,
    /// The actions, in order.
    pub actions: Vec<Action>,
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source() == other.source()
    }
}

impl Eq for Expression {}

impl Rule {
    /// Whether the rule's expressions all hold for this exchange.
    pub fn applies(&self, facts: &dyn Facts) -> bool {
        self.expressions.iter().all(|e| e.matches(facts))
    }
}

/// A parsed traffic policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Rules run when a connection is accepted.
    pub on_tcp_connect: Vec<Rule>,
    /// Rules run for each request.
    pub on_http_request: Vec<Rule>,
    /// Rules run for each response.
    pub on_http_response: Vec<Rule>,
    /// Whether any expression or `${…}` of the policy names an action result
    /// (`actions.ngrok.*`): only then do its actions record them.
    pub reads_results: bool,
}

/// What kind of mistake a policy has, for stable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyErrorKind {
    /// The document does not parse, or names unknown phases, keys, actions or fields.
    Parse,
    /// It parses but does not fit the endpoint (phase, family, unreachable action).
    Invalid,
    /// A cloud endpoint's policy can let a request through.
    NotTerminating,
}

/// Why a policy was refused: where, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The kind of mistake.
    pub kind: PolicyErrorKind,
    /// Where in the document, e.g. `on_http_request[2].actions[0].config`; empty for
    /// the document as a whole.
    pub path: String,
    /// What is wrong, with a hint where one helps.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        kind: PolicyErrorKind::Parse,
        path: path.into(),
        message: message.into(),
    }
}

/// The endpoint a policy is checked for, as far as the checks need it.
#[derive(Clone, Copy, Debug)]
pub struct Carrier<'a> {
    /// The endpoint's URL: its protocol decides the phases allowed.
    pub url: &'a EndpointUrl,
    /// Reached only by forward-internal, never by a new connection (SPEC §2).
    pub internal: bool,
    /// An agent endpoint (with an upstream); a cloud endpoint's policy must end
    /// every request itself.
    pub has_upstream: bool,
}

impl Policy {
    /// Parses a policy document. JSON when it starts with `{`, YAML otherwise; both give
    /// the same model. Blank text is the empty policy.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return Ok(Policy::default());
        }
        let doc: Value = if trimmed.starts_with('{') {
            serde_json::from_str(text).map_err(|e| {
                err(
                    "",
                    format!(
                        "invalid JSON at line {} column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                )
            })?
        } else {
            // YAML 1.2 booleans: `yes`, `no`, `on`, `y` stay strings (a header value
            // of `yes` must not become `true`).
            let options = serde_saphyr::options! { strict_booleans: true };
            serde_saphyr::from_str_with_options(text, options)
                .map_err(|e| err("", format!("invalid YAML: {e}")))?
        };
        // Every expression and template is a string of the document: one that names
        // a result means the actions must record theirs (a mention in a literal only
        // costs the recording).
        let reads_results = names_results(&doc);
        let obj = match doc {
            Value::Object(o) => o,
            Value::Null => return Ok(Policy::default()),
            _ => return Err(err("", "a policy is a map of phases")),
        };
        let mut policy = Policy::default();
        for (key, value) in obj {
            let phase = Phase::ALL
                .into_iter()
                .find(|p| p.key() == key)
                .ok_or_else(|| {
                    err(
                        key.clone(),
                        "unknown phase; use on_tcp_connect, on_http_request or on_http_response",
                    )
                })?;
            let rules = parse_rules(phase, value)?;
            *policy.phase_mut(phase) = rules;
        }
        policy.reads_results = reads_results;
        Ok(policy)
    }

    /// The rules of one phase.
    pub fn phase(&self, phase: Phase) -> &[Rule] {
        match phase {
            Phase::TcpConnect => &self.on_tcp_connect,
            Phase::HttpRequest => &self.on_http_request,
            Phase::HttpResponse => &self.on_http_response,
        }
    }

    fn phase_mut(&mut self, phase: Phase) -> &mut Vec<Rule> {
        match phase {
            Phase::TcpConnect => &mut self.on_tcp_connect,
            Phase::HttpRequest => &mut self.on_http_request,
            Phase::HttpResponse => &mut self.on_http_response,
        }
    }

    /// Checks the policy against the endpoint that carries it: phases allowed for the
    /// protocol and binding, actions allowed in their phase, no unreachable actions,
    /// forward-internal targets of the same family, and that a cloud endpoint's policy
    /// ends every request.
    pub fn validate_for(&self, carrier: Carrier<'_>) -> Result<(), PolicyError> {
        let url = carrier.url;
        let invalid = |path: &str, message: String| PolicyError {
            kind: PolicyErrorKind::Invalid,
            path: path.to_string(),
            message,
        };
        let family = url.scheme.family();
        if family == Family::Stream {
            for phase in [Phase::HttpRequest, Phase::HttpResponse] {
                if !self.phase(phase).is_empty() {
                    return Err(invalid(
                        phase.key(),
                        format!("{} endpoints may only have on_tcp_connect", url.scheme),
                    ));
                }
            }
        }
        if family == Family::Http && carrier.internal && !self.on_tcp_connect.is_empty() {
            return Err(invalid(
                "on_tcp_connect",
                "internal http/https endpoints are reached by forward-internal without a \
                 new TCP connection, so on_tcp_connect would never run; move these rules \
                 to on_http_request"
                    .into(),
            ));
        }
        for phase in Phase::ALL {
            if self.phase(phase).len() > ActionId::MAX_RULES {
                return Err(invalid(
                    phase.key(),
                    format!("more than {} rules", ActionId::MAX_RULES),
                ));
            }
            for (r, rule) in self.phase(phase).iter().enumerate() {
                if rule.actions.len() > ActionId::MAX_ACTIONS {
                    return Err(invalid(
                        &format!("{}[{r}]", phase.key()),
                        format!("more than {} actions", ActionId::MAX_ACTIONS),
                    ));
                }
                let mut terminated = false;
                for (a, action) in rule.actions.iter().enumerate() {
                    let path = format!("{}[{r}].actions[{a}]", phase.key());
                    if terminated {
                        return Err(invalid(
                            &path,
                            format!(
                                "{} is unreachable: an earlier action of this rule always \
                                 ends the phase",
                                action.type_name()
                            ),
                        ));
                    }
                    if !action.phases().contains(&phase) {
                        return Err(invalid(
                            &path,
                            format!("{} cannot run in {}", action.type_name(), phase.key()),
                        ));
                    }
                    if let Action::ForwardInternal(f) = action {
                        f.validate_for(url.scheme).map_err(|m| invalid(&path, m))?;
                    }
                    if matches!(action, Action::TerminateTls(_))
                        && !matches!(
                            url.scheme,
                            crate::url::Scheme::Tls | crate::url::Scheme::Https
                        )
                    {
                        return Err(invalid(
                            &path,
                            format!(
                                "terminate-tls ends TLS on tls and https endpoints; a {} \
                                 endpoint has none to end",
                                url.scheme
                            ),
                        ));
                    }
                    terminated = action.terminates();
                }
            }
        }
        if !carrier.has_upstream {
            let phase = match family {
                Family::Http => Phase::HttpRequest,
                Family::Stream => Phase::TcpConnect,
            };
            // A rule without expressions always runs: a terminating action in one
            // proves that every request ends.
            let ends = self.phase(phase).iter().any(|rule| {
                rule.expressions.is_empty() && rule.actions.iter().any(Action::terminates)
            });
            if !ends {
                return Err(PolicyError {
                    kind: PolicyErrorKind::NotTerminating,
                    path: phase.key().into(),
                    message: match family {
                        Family::Http => {
                            "a cloud endpoint has no upstream, so its policy must end every \
                             request with custom-response, deny, redirect (without from), \
                             close-connection or forward-internal (on_error: halt)"
                        }
                        Family::Stream => {
                            "a cloud endpoint has no upstream, so its policy must end every \
                             connection with deny or forward-internal (on_error: halt)"
                        }
                    }
                    .into(),
                });
            }
        }
        Ok(())
    }
}

/// Whether a string anywhere in `doc` names an action result.
fn names_results(doc: &Value) -> bool {
    match doc {
        Value::String(s) => s.contains("actions.ngrok."),
        Value::Array(items) => items.iter().any(names_results),
        Value::Object(map) => map.values().any(names_results),
        _ => false,
    }
}

fn parse_rules(phase: Phase, value: Value) -> Result<Vec<Rule>, PolicyError> {
    let items = match value {
        Value::Array(items) => items,
        Value::Null => return Ok(Vec::new()),
        _ => return Err(err(phase.key(), "a phase is a list of rules")),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_rule(phase, &format!("{}[{i}]", phase.key()), item))
        .collect()
}

fn parse_rule(phase: Phase, path: &str, value: Value) -> Result<Rule, PolicyError> {
    let Value::Object(obj) = value else {
        return Err(err(path, "a rule is a map with `actions`"));
    };
    let mut rule = Rule::default();
    let mut saw_actions = false;
    for (key, value) in obj {
        match key.as_str() {
            "name" => match value {
                Value::String(s) => rule.name = Some(s),
                _ => return Err(err(format!("{path}.name"), "name is a string")),
            },
            "expressions" => {
                let items = match value {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a,
                    _ => return Err(err(format!("{path}.expressions"), "a list of strings")),
                };
                for (i, item) in items.into_iter().enumerate() {
                    let at = format!("{path}.expressions[{i}]");
                    let Value::String(source) = item else {
                        return Err(err(at, "an expression is a string"));
                    };
                    let expr = Expression::compile(&source, phase)
                        .map_err(|e| err(at, format!("`{source}`: {e}")))?;
                    rule.expressions.push(expr);
                }
            }
            "actions" => {
                saw_actions = true;
                let Value::Array(actions) = value else {
                    return Err(err(format!("{path}.actions"), "actions is a list"));
                };
                for (i, action) in actions.into_iter().enumerate() {
                    rule.actions.push(parse_action(
                        phase,
                        &format!("{path}.actions[{i}]"),
                        action,
                    )?);
                }
            }
            other => {
                return Err(err(
                    format!("{path}.{other}"),
                    "unknown rule key; a rule has name, expressions and actions",
                ))
            }
        }
    }
    if !saw_actions || rule.actions.is_empty() {
        return Err(err(
            format!("{path}.actions"),
            "a rule needs at least one action",
        ));
    }
    Ok(rule)
}

fn parse_action(phase: Phase, path: &str, value: Value) -> Result<Action, PolicyError> {
    let Value::Object(mut obj) = value else {
        return Err(err(path, "an action is a map with `type` and `config`"));
    };
    let kind = match obj.remove("type") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(err(format!("{path}.type"), "type is a string")),
        None => return Err(err(format!("{path}.type"), "an action needs a type")),
    };
    let config = obj.remove("config").unwrap_or(Value::Null);
    if let Some(key) = obj.keys().next() {
        return Err(err(
            format!("{path}.{key}"),
            "unknown action key; an action has type and config",
        ));
    }
    let config = match config {
        Value::Null => Value::Object(Default::default()),
        other => other,
    };
    Action::parse(&kind, config, phase).map_err(|m| {
        let at = if m.starts_with("unknown action type") {
            format!("{path}.type")
        } else if let Some(field) = m
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            // serde names the field and the expected ones; the path names it too.
            format!("{path}.config.{field}")
        } else {
            format!("{path}.config")
        };
        err(at, m)
    })
}

#[cfg(test)]
mod tests;
