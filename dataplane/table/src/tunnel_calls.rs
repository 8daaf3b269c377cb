//! What the data plane's tunnel sessions ask control, and control's answers: the
//! calls that travel on the control link's second direction (see [`crate::wire`]).
//!
//! A Bind goes through control's validation exactly like an API create; the data plane
//! never decides on its own which endpoints exist.

use crate::codec::{put_str, put_u32, InvalidMessage, Reader};

/// A Bind: a session asks for an endpoint held by tunnel sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindCall {
    /// The account of the session's authtoken.
    pub account: String,
    /// The authtoken the session authenticated with.
    pub authtoken: String,
    /// The endpoint id to keep (a rebind after reconnecting), or empty for a new one.
    pub endpoint_id: String,
    /// The endpoint URL.
    pub url: String,
    /// `public`, `internal`, or empty (from the URL).
    pub binding: String,
    /// Whether it pools with endpoints of the same URL.
    pub pooling_enabled: bool,
    /// The traffic policy text, possibly empty.
    pub traffic_policy: String,
    /// Free text from the agent.
    pub metadata: String,
    /// Where the agent forwards, for people reading the endpoint.
    pub forwards_to: String,
}

/// A call from the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunnelCall {
    /// Create (or keep) an endpoint for a session.
    Bind(BindCall),
    /// A session unbound an endpoint; remove it if no session holds it any more.
    Unbind {
        /// The account asking.
        account: String,
        /// The endpoint.
        endpoint_id: String,
    },
    /// No session holds these endpoints any more (their sessions ended).
    Released {
        /// The endpoints.
        endpoint_ids: Vec<String>,
    },
    /// Sessions hold these endpoints now: they stay (a lease renewal, sent now and
    /// then, so that endpoints of a data plane that died do not stay forever).
    Held {
        /// The endpoints.
        endpoint_ids: Vec<String>,
    },
}

/// Control's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunnelAnswer {
    /// The endpoint exists and the session may carry its traffic.
    Bound {
        /// Its id.
        endpoint_id: String,
        /// Its URL in canonical form.
        url: String,
    },
    /// Done.
    Done,
    /// Refused, with the reason for the agent.
    Failed(String),
}

const CALL_BIND: u8 = 1;
const CALL_UNBIND: u8 = 2;
const CALL_RELEASED: u8 = 3;
const CALL_HELD: u8 = 4;

const ANSWER_BOUND: u8 = 1;
const ANSWER_DONE: u8 = 2;
const ANSWER_FAILED: u8 = 3;

fn put_list(out: &mut Vec<u8>, items: &[String]) {
    put_u32(out, items.len() as u32);
    for i in items {
        put_str(out, i);
    }
}

fn read_list(r: &mut Reader<'_>) -> Result<Vec<String>, InvalidMessage> {
    let n = r.count(4)?;
    (0..n).map(|_| r.string()).collect()
}

impl TunnelCall {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TunnelCall::Bind(b) => {
                out.push(CALL_BIND);
                for s in [&b.account, &b.authtoken, &b.endpoint_id, &b.url, &b.binding] {
                    put_str(out, s);
                }
                out.push(b.pooling_enabled as u8);
                for s in [&b.traffic_policy, &b.metadata, &b.forwards_to] {
                    put_str(out, s);
                }
            }
            TunnelCall::Unbind {
                account,
                endpoint_id,
            } => {
                out.push(CALL_UNBIND);
                put_str(out, account);
                put_str(out, endpoint_id);
            }
            TunnelCall::Released { endpoint_ids } => {
                out.push(CALL_RELEASED);
                put_list(out, endpoint_ids);
            }
            TunnelCall::Held { endpoint_ids } => {
                out.push(CALL_HELD);
                put_list(out, endpoint_ids);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TunnelCall, InvalidMessage> {
        Ok(match r.u8()? {
            CALL_BIND => TunnelCall::Bind(BindCall {
                account: r.string()?,
                authtoken: r.string()?,
                endpoint_id: r.string()?,
                url: r.string()?,
                binding: r.string()?,
                pooling_enabled: r.bool()?,
                traffic_policy: r.string()?,
                metadata: r.string()?,
                forwards_to: r.string()?,
            }),
            CALL_UNBIND => TunnelCall::Unbind {
                account: r.string()?,
                endpoint_id: r.string()?,
            },
            CALL_RELEASED => TunnelCall::Released {
                endpoint_ids: read_list(r)?,
            },
            CALL_HELD => TunnelCall::Held {
                endpoint_ids: read_list(r)?,
            },
            kind => return Err(InvalidMessage::UnknownKind(kind)),
        })
    }
}

impl TunnelAnswer {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TunnelAnswer::Bound { endpoint_id, url } => {
                out.push(ANSWER_BOUND);
                put_str(out, endpoint_id);
                put_str(out, url);
            }
            TunnelAnswer::Done => out.push(ANSWER_DONE),
            TunnelAnswer::Failed(why) => {
                out.push(ANSWER_FAILED);
                put_str(out, why);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TunnelAnswer, InvalidMessage> {
        Ok(match r.u8()? {
            ANSWER_BOUND => TunnelAnswer::Bound {
                endpoint_id: r.string()?,
                url: r.string()?,
            },
            ANSWER_DONE => TunnelAnswer::Done,
            ANSWER_FAILED => TunnelAnswer::Failed(r.string()?),
            kind => return Err(InvalidMessage::UnknownKind(kind)),
        })
    }
}

/// One of each call, for round-trip tests.
#[cfg(test)]
pub(crate) fn examples() -> Vec<TunnelCall> {
    vec![
        TunnelCall::Bind(BindCall {
            account: "acc_1".into(),
            authtoken: "at_1".into(),
            endpoint_id: "ep_2".into(),
            url: "https://app.internal".into(),
            binding: "internal".into(),
            pooling_enabled: true,
            traffic_policy: "on_http_request: []".into(),
            metadata: "m".into(),
            forwards_to: "http://localhost:8080".into(),
        }),
        TunnelCall::Unbind {
            account: "acc_1".into(),
            endpoint_id: "ep_2".into(),
        },
        TunnelCall::Released {
            endpoint_ids: vec!["ep_2".into(), "ep_3".into()],
        },
        TunnelCall::Held {
            endpoint_ids: vec![],
        },
    ]
}

/// One of each answer, for round-trip tests.
#[cfg(test)]
pub(crate) fn answer_examples() -> Vec<TunnelAnswer> {
    vec![
        TunnelAnswer::Bound {
            endpoint_id: "ep_2".into(),
            url: "https://app.internal".into(),
        },
        TunnelAnswer::Done,
        TunnelAnswer::Failed("no".into()),
    ]
}
