//! The action registry: one enum variant per action, its phases, and its verdict.

use super::actions::{
    add_headers::{AddHeaders, AddHeadersConfig},
    custom_response::{CustomResponse, CustomResponseConfig},
    deny::Deny,
    forward_internal::{ForwardInternal, ForwardInternalConfig},
    remove_headers::RemoveHeaders,
    set_vars::{SetVars, SetVarsConfig},
    Exchange,
};
use super::Phase;

/// One action of a rule, its config parsed, checked and compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Hand the request to an internal endpoint (SPEC §5).
    ForwardInternal(ForwardInternal),
    /// Answer with a configured response.
    CustomResponse(CustomResponse),
    /// Refuse the request.
    Deny(Deny),
    /// Add headers.
    AddHeaders(AddHeaders),
    /// Remove headers.
    RemoveHeaders(RemoveHeaders),
    /// Set `vars.*`.
    SetVars(SetVars),
}

/// What the executor does after an action ran.
#[derive(Debug)]
pub enum Verdict<'p> {
    /// Go on with the next action.
    Next,
    /// Answer with this response; ends the phase.
    Respond(&'p CustomResponse),
    /// Refuse with this status; ends the phase.
    Deny(u16),
    /// Hand over to an internal endpoint; the executor resolves it.
    ForwardInternal(&'p ForwardInternal),
}

use Phase::{HttpRequest as Q, HttpResponse as R, TcpConnect as T};

impl Action {
    /// Every action type, as written in documents, with the phases it may run in.
    pub const TYPES: &'static [(&'static str, &'static [Phase])] = &[
        ("forward-internal", &[T, Q]),
        ("custom-response", &[Q, R]),
        ("deny", &[T, Q]),
        ("add-headers", &[Q, R]),
        ("remove-headers", &[Q, R]),
        ("set-vars", &[T, Q, R]),
    ];

    /// Parses the config of action `kind`, checks it and compiles it for `phase`.
    pub(crate) fn parse(
        kind: &str,
        config: serde_json::Value,
        phase: Phase,
    ) -> Result<Action, String> {
        fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        Ok(match kind {
            "forward-internal" => Action::ForwardInternal(ForwardInternal::compile(
                typed::<ForwardInternalConfig>(config)?,
                phase,
            )?),
            "custom-response" => Action::CustomResponse(CustomResponse::compile(
                typed::<CustomResponseConfig>(config)?,
                phase,
            )?),
            "deny" => {
                let deny: Deny = typed(config)?;
                deny.validate()?;
                Action::Deny(deny)
            }
            "add-headers" => Action::AddHeaders(AddHeaders::compile(
                typed::<AddHeadersConfig>(config)?,
                phase,
            )?),
            "remove-headers" => {
                let remove: RemoveHeaders = typed(config)?;
                remove.validate()?;
                Action::RemoveHeaders(remove)
            }
            "set-vars" => {
                Action::SetVars(SetVars::compile(typed::<SetVarsConfig>(config)?, phase)?)
            }
            other => {
                let known: Vec<_> = Self::TYPES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown action type `{other}`; known types: {}",
                    known.join(", ")
                ));
            }
        })
    }

    /// The name of the action as written in documents.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::ForwardInternal(_) => "forward-internal",
            Action::CustomResponse(_) => "custom-response",
            Action::Deny(_) => "deny",
            Action::AddHeaders(_) => "add-headers",
            Action::RemoveHeaders(_) => "remove-headers",
            Action::SetVars(_) => "set-vars",
        }
    }

    /// The phases this action may appear in.
    pub fn phases(&self) -> &'static [Phase] {
        let name = self.type_name();
        Self::TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, p)| p)
    }

    /// Whether the action always ends its phase.
    pub fn terminates(&self) -> bool {
        match self {
            Action::ForwardInternal(f) => f.terminates(),
            Action::CustomResponse(_) | Action::Deny(_) => true,
            Action::AddHeaders(_) | Action::RemoveHeaders(_) | Action::SetVars(_) => false,
        }
    }

    /// Runs the action in an exchange.
    pub fn execute(&self, x: &mut dyn Exchange) -> Verdict<'_> {
        match self {
            Action::ForwardInternal(f) => Verdict::ForwardInternal(f),
            Action::CustomResponse(r) => Verdict::Respond(r),
            Action::Deny(d) => Verdict::Deny(d.status_code),
            Action::AddHeaders(a) => {
                a.apply(x);
                Verdict::Next
            }
            Action::RemoveHeaders(r) => {
                r.apply(x);
                Verdict::Next
            }
            Action::SetVars(s) => {
                s.apply(x);
                Verdict::Next
            }
        }
    }
}
