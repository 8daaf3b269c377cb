//! What every action is to the executor: the [`PolicyAction`] trait each action's
//! file implements, the [`Verdict`] it returns, and the [`Action`] enum that the
//! registry in [`super::actions`] generates over all of them.

use std::borrow::Cow;

use super::actions::Exchange;
use super::expr::Facts;
use super::response::LocalResponse;
use super::Phase;
use crate::url::EndpointUrl;

/// One action type: its config as written, how it is compiled for a phase, and what
/// it does when it runs. Everything about an action lives in its own file.
pub trait PolicyAction: Sized {
    /// The `config` map as written in documents.
    type Config: serde::de::DeserializeOwned;

    /// Checks the config and compiles it for `phase`.
    fn compile(config: Self::Config, phase: Phase) -> Result<Self, String>;

    /// Whether the action always ends its phase (what create-time checks rely on to
    /// prove that a cloud endpoint's policy ends every request).
    fn terminates(&self) -> bool {
        false
    }

    /// Runs the action in an exchange.
    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p>;
}

/// What the executor does after an action ran: plain data. An action that answers
/// has built its answer itself.
#[derive(Debug)]
pub enum Verdict<'p> {
    /// Go on with the next action.
    Continue,
    /// Answer with this response (in on_tcp_connect: close the connection); ends the
    /// phase.
    Respond(LocalResponse<'p>),
    /// Close the client connection without an answer; ends the phase.
    Close,
    /// Hand the request (or the connection) to an internal endpoint; the executor
    /// resolves the target within the account.
    Forward(&'p dyn ForwardTarget),
}

/// What the executor needs of an action that hands over to an internal endpoint.
pub trait ForwardTarget: std::fmt::Debug {
    /// The internal URL to hand over to, rendered for this exchange; `None` when it
    /// did not render to an internal URL.
    fn target(&self, facts: &dyn Facts) -> Option<Cow<'_, EndpointUrl>>;
    /// Whether a failed hand-over lets the next action run (`on_error: continue`)
    /// instead of answering the error.
    fn continues_on_error(&self) -> bool;
}

/// Where an action sits in its policy: (phase, rule, action). The data plane keeps an
/// action's runtime state (rate-limit counters, terminate-tls configs) under this id,
/// assigned when its table is compiled, so state never depends on where a value lives
/// in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId(u32);

impl ActionId {
    /// Rules a phase may have: ids tell this many apart (create-time checks refuse more).
    pub const MAX_RULES: usize = 1 << 14;
    /// Actions a rule may have.
    pub const MAX_ACTIONS: usize = 1 << 16;

    /// The id of action `action` of rule `rule` in `phase`.
    pub fn new(phase: Phase, rule: usize, action: usize) -> Self {
        let phase = match phase {
            Phase::TcpConnect => 0,
            Phase::HttpRequest => 1,
            Phase::HttpResponse => 2,
        };
        // Within MAX_RULES and MAX_ACTIONS, which validation holds policies to.
        ActionId(phase << 30 | ((rule as u32) & 0x3fff) << 16 | (action as u32) & 0xffff)
    }
}
