//! The action registry: one enum variant per action, its phases, and its verdict.

use super::actions::{
    add_headers::AddHeaders,
    custom_response::CustomResponse,
    deny::Deny,
    forward_internal::{ForwardInternal, ForwardInternalConfig},
    remove_headers::RemoveHeaders,
    HeadersMut,
};
use super::Phase;

/// One action of a rule, its config parsed and checked.
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

impl Action {
    /// Every action type, as written in documents, with the phases it may run in.
    pub const TYPES: &'static [(&'static str, &'static [Phase])] = &[
        ("forward-internal", &[Phase::TcpConnect, Phase::HttpRequest]),
        (
            "custom-response",
            &[Phase::HttpRequest, Phase::HttpResponse],
        ),
        ("deny", &[Phase::TcpConnect, Phase::HttpRequest]),
        ("add-headers", &[Phase::HttpRequest, Phase::HttpResponse]),
        ("remove-headers", &[Phase::HttpRequest, Phase::HttpResponse]),
    ];

    /// Parses the config of action `kind` and checks it on its own.
    pub(crate) fn parse(kind: &str, config: serde_json::Value) -> Result<Action, String> {
        fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        let action = match kind {
            "forward-internal" => {
                Action::ForwardInternal(typed::<ForwardInternalConfig>(config)?.try_into()?)
            }
            "custom-response" => Action::CustomResponse(typed(config)?),
            "deny" => Action::Deny(typed(config)?),
            "add-headers" => Action::AddHeaders(typed(config)?),
            "remove-headers" => Action::RemoveHeaders(typed(config)?),
            other => {
                let known: Vec<_> = Self::TYPES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown action type `{other}`; known types: {}",
                    known.join(", ")
                ));
            }
        };
        match &action {
            Action::ForwardInternal(_) => Ok(()),
            Action::CustomResponse(a) => a.validate(),
            Action::Deny(a) => a.validate(),
            Action::AddHeaders(a) => a.validate(),
            Action::RemoveHeaders(a) => a.validate(),
        }?;
        Ok(action)
    }

    /// The name of the action as written in documents.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::ForwardInternal(_) => "forward-internal",
            Action::CustomResponse(_) => "custom-response",
            Action::Deny(_) => "deny",
            Action::AddHeaders(_) => "add-headers",
            Action::RemoveHeaders(_) => "remove-headers",
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
            Action::AddHeaders(_) | Action::RemoveHeaders(_) => false,
        }
    }

    /// Runs the action against a message's headers.
    pub fn execute(&self, headers: &mut impl HeadersMut) -> Verdict<'_> {
        match self {
            Action::ForwardInternal(f) => Verdict::ForwardInternal(f),
            Action::CustomResponse(r) => Verdict::Respond(r),
            Action::Deny(d) => Verdict::Deny(d.status_code),
            Action::AddHeaders(a) => {
                a.apply(headers);
                Verdict::Next
            }
            Action::RemoveHeaders(r) => {
                r.apply(headers);
                Verdict::Next
            }
        }
    }
}
