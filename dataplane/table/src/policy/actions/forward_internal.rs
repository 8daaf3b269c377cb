//! `forward-internal`: hand the request (or connection) to an internal endpoint of the
//! same account, in memory (SPEC §5). The data plane does the lookup and the hop; this
//! file owns the config, its create-time checks and the target's resolution.

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{ForwardTarget, PolicyAction, Verdict};
use crate::policy::expr::{Facts, Template};
use crate::policy::Phase;
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
    /// The internal URL to forward to; may interpolate `${…}`.
    #[serde(deserialize_with = "super::scalar_string")]
    pub url: String,
    /// What to do when the forward fails.
    #[serde(default)]
    pub on_error: OnError,
    /// The target's binding: only `internal`, as the hosted service's older docs and
    /// guides write it (every target is internal anyway).
    #[serde(default)]
    pub binding: Option<String>,
}

/// Where a forward goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A literal URL, checked at create time.
    Static(EndpointUrl),
    /// A URL built per request, checked when it is used.
    Dynamic(Template),
}

/// `forward-internal`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardInternal {
    /// The target.
    pub target: Target,
    /// What to do when the forward fails.
    pub on_error: OnError,
}

/// Why a dynamic target is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadTarget(pub String);

impl ForwardInternal {
    /// Parses the target (literal URLs must be internal) and compiles templates.
    pub fn new(config: ForwardInternalConfig, phase: Phase) -> Result<Self, String> {
        if let Some(binding) = config.binding.as_deref().filter(|b| *b != "internal") {
            return Err(format!(
                "binding `{binding}`: forward-internal targets are internal endpoints \
                 (binding `internal`)"
            ));
        }
        let template = Template::compile(&config.url, phase).map_err(|e| format!("url: {e}"))?;
        let target = match template.as_literal() {
            Some(literal) => Target::Static(parse_internal(literal)?),
            None => Target::Dynamic(template),
        };
        Ok(ForwardInternal {
            target,
            on_error: config.on_error,
        })
    }

    /// Checks a literal target is of the forwarding endpoint's family (SPEC §5).
    pub fn validate_for(&self, from: Scheme) -> Result<(), String> {
        if let Target::Static(target) = &self.target {
            if target.scheme.family() != from.family() {
                return Err(format!(
                    "a {from} endpoint cannot forward to {target}: forward-internal stays \
                     within http/https or within tcp/tls"
                ));
            }
        }
        Ok(())
    }

    /// The target for this request: the literal one, or the rendered template parsed
    /// and checked to be internal.
    pub fn resolve(
        &self,
        facts: &dyn Facts,
    ) -> Result<std::borrow::Cow<'_, EndpointUrl>, BadTarget> {
        match &self.target {
            Target::Static(url) => Ok(std::borrow::Cow::Borrowed(url)),
            Target::Dynamic(template) => parse_internal(&template.render(facts))
                .map(std::borrow::Cow::Owned)
                .map_err(BadTarget),
        }
    }

    /// Whether the action always ends the phase.
    pub fn always_ends(&self) -> bool {
        self.on_error == OnError::Halt
    }
}

fn parse_internal(text: &str) -> Result<EndpointUrl, String> {
    let target = EndpointUrl::parse(text).map_err(|e| format!("url `{text}`: {e}"))?;
    if !target.is_internal() {
        return Err(format!(
            "url `{text}` is not internal: forward-internal targets end in `.internal`"
        ));
    }
    if matches!(target.host, crate::url::HostPattern::Wildcard(_)) {
        return Err(format!("url `{text}` must name one host, not a wildcard"));
    }
    Ok(target)
}

impl PolicyAction for ForwardInternal {
    type Config = ForwardInternalConfig;

    fn compile(config: ForwardInternalConfig, phase: Phase) -> Result<Self, String> {
        ForwardInternal::new(config, phase)
    }

    fn terminates(&self) -> bool {
        self.always_ends()
    }

    /// The target is resolved by the executor, which knows the account and the chain.
    fn execute<'p>(&'p self, _: &mut dyn Exchange) -> Verdict<'p> {
        Verdict::Forward(self)
    }
}

impl ForwardTarget for ForwardInternal {
    fn target(&self, facts: &dyn Facts) -> Option<std::borrow::Cow<'_, EndpointUrl>> {
        self.resolve(facts).ok()
    }

    fn continues_on_error(&self) -> bool {
        self.on_error == OnError::Continue
    }
}
