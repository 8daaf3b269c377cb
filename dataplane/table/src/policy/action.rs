//! The action registry: one enum variant per action, its phases, and its verdict.

use super::actions::{
    add_headers::{AddHeaders, AddHeadersConfig},
    basic_auth::{BasicAuth, BasicAuthConfig},
    close_connection::CloseConnection,
    custom_response::{CustomResponse, CustomResponseConfig},
    deny::Deny,
    forward_internal::{ForwardInternal, ForwardInternalConfig},
    log::{Log, LogConfig},
    rate_limit::{RateLimit, RateLimitConfig},
    redirect::{Redirect, RedirectConfig},
    remove_headers::RemoveHeaders,
    restrict_ips::{RestrictIps, RestrictIpsConfig},
    set_vars::{SetVars, SetVarsConfig},
    terminate_tls::{TerminateTls, TerminateTlsConfig},
    url_rewrite::{UrlRewrite, UrlRewriteConfig},
    Exchange,
};
use super::expr::Template;
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
    /// Close the client connection.
    CloseConnection(CloseConnection),
    /// Answer with a Location.
    Redirect(Redirect),
    /// Rewrite the path and query.
    UrlRewrite(UrlRewrite),
    /// Allow or deny by peer address.
    RestrictIps(RestrictIps),
    /// Require HTTP Basic credentials.
    BasicAuth(BasicAuth),
    /// Limit requests per bucket and window.
    RateLimit(RateLimit),
    /// Write a structured log line.
    Log(Log),
    /// End TLS on a tls endpoint, then pass plain bytes on.
    TerminateTls(TerminateTls),
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
    /// Close the client connection without an answer; ends the phase.
    Close,
    /// Answer with a redirect; ends the phase.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// The rendered Location.
        location: String,
        /// Extra headers to render.
        headers: &'p [(String, Template)],
    },
    /// The peer address is not allowed: 403 (tcp: close); ends the phase.
    Restricted,
    /// Credentials missing or wrong: 401 with this realm; ends the phase.
    Unauthorized(&'p str),
    /// Count this request in `bucket` of this limit; the data plane holds the
    /// counters and answers 429 above the capacity (which ends the phase).
    RateLimit(&'p RateLimit, u64),
    /// End TLS before the bytes go on; the phase continues.
    TerminateTls(&'p TerminateTls),
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
        ("close-connection", &[T, Q]),
        ("redirect", &[Q]),
        ("url-rewrite", &[Q]),
        ("restrict-ips", &[T, Q]),
        ("basic-auth", &[Q]),
        ("rate-limit", &[Q]),
        ("log", &[T, Q, R]),
        ("terminate-tls", &[T]),
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
            "close-connection" => Action::CloseConnection(typed(config)?),
            "redirect" => {
                Action::Redirect(Redirect::compile(typed::<RedirectConfig>(config)?, phase)?)
            }
            "url-rewrite" => Action::UrlRewrite(UrlRewrite::compile(
                typed::<UrlRewriteConfig>(config)?,
                phase,
            )?),
            "restrict-ips" => {
                Action::RestrictIps(RestrictIps::compile(typed::<RestrictIpsConfig>(config)?)?)
            }
            "basic-auth" => {
                Action::BasicAuth(BasicAuth::compile(typed::<BasicAuthConfig>(config)?)?)
            }
            "rate-limit" => Action::RateLimit(RateLimit::compile(
                typed::<RateLimitConfig>(config)?,
                phase,
            )?),
            "log" => Action::Log(Log::compile(typed::<LogConfig>(config)?, phase)?),
            "terminate-tls" => {
                Action::TerminateTls(TerminateTls::compile(typed::<TerminateTlsConfig>(config)?)?)
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
            Action::CloseConnection(_) => "close-connection",
            Action::Redirect(_) => "redirect",
            Action::UrlRewrite(_) => "url-rewrite",
            Action::RestrictIps(_) => "restrict-ips",
            Action::BasicAuth(_) => "basic-auth",
            Action::RateLimit(_) => "rate-limit",
            Action::Log(_) => "log",
            Action::TerminateTls(_) => "terminate-tls",
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
            Action::CustomResponse(_) | Action::Deny(_) | Action::CloseConnection(_) => true,
            Action::Redirect(r) => r.always(),
            Action::AddHeaders(_)
            | Action::RemoveHeaders(_)
            | Action::SetVars(_)
            | Action::UrlRewrite(_)
            | Action::RestrictIps(_)
            | Action::BasicAuth(_)
            | Action::RateLimit(_)
            | Action::Log(_)
            | Action::TerminateTls(_) => false,
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
            Action::CloseConnection(_) => Verdict::Close,
            Action::Redirect(r) => match r.location(x) {
                Some(location) => Verdict::Redirect {
                    status: r.status_code,
                    location,
                    headers: &r.headers,
                },
                None => Verdict::Next,
            },
            Action::UrlRewrite(u) => {
                u.apply(x);
                Verdict::Next
            }
            Action::RestrictIps(r) if r.permits(x) => Verdict::Next,
            Action::RestrictIps(_) => Verdict::Restricted,
            Action::BasicAuth(b) if b.permits(x) => Verdict::Next,
            Action::BasicAuth(b) => Verdict::Unauthorized(&b.realm),
            Action::RateLimit(r) => Verdict::RateLimit(r, r.bucket(x)),
            Action::Log(l) => {
                let line = l.line(x);
                x.log(line);
                Verdict::Next
            }
            Action::TerminateTls(t) => Verdict::TerminateTls(t),
        }
    }
}
