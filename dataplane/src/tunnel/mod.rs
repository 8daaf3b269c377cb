//! Agent tunnels: agents dial out to the tunnel listener and bind endpoints over the
//! hosted service's own agent protocol, so its SDKs work unchanged; the data plane
//! then sends those endpoints' upstream traffic over streams it opens on their
//! sessions. HTTP parsing and policy stay here; the agent relays bytes.
//!
//! The path of a session: [`listener`] accepts and hands it to [`session`] (TLS,
//! Auth, Bind, heartbeats) over a [`mux`] of [`frame`]s with [`proto`] messages;
//! [`registry`] records which sessions carry which endpoints and [`index`] which
//! sessions there are (for control, which sends them [`command`]s); a request's
//! upstream step calls [`open`], which uses a session of its own worker or, through
//! [`handover`], one of another worker.

pub(crate) mod channel;
pub(crate) mod command;
pub(crate) mod frame;
pub(crate) mod handover;
pub(crate) mod index;
pub(crate) mod listener;
pub(crate) mod mux;
pub(crate) mod online;
pub(crate) mod open;
pub(crate) mod proto;
pub(crate) mod registry;
mod rent;
pub(crate) mod session;
pub(crate) mod stream;

pub(crate) use open::open;

/// Feeds untrusted bytes to the agent protocol's parsers, as a hostile agent could:
/// frames until one is refused, and the same bytes as an RPC request. The fuzz
/// target's entry point; nothing else calls it.
#[doc(hidden)]
pub fn parse_untrusted(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((_, used))) = frame::decode(rest) {
        rest = &rest[used..];
    }
    if let Ok(Some(value)) = proto::complete_json(data) {
        let _ = proto::parse_bind(&value);
        let _ = serde_json::from_value::<proto::Auth>(value);
    }
}
