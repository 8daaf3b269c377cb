//! HTTP/1.x, in the order a request meets it: the connection ([`conn`]) reads heads
//! ([`head`]) and serves one [`exchange`] at a time, which routes and runs the
//! policy, then either [`proxy`]s to the upstream (bodies by their [`framing`],
//! streamed by [`body`]; connection fields dropped by [`fields`]) or answers
//! [`local`]ly.

pub(crate) mod body;
pub(crate) mod buf;
mod client;
pub(crate) mod conn;
mod exchange;
mod fields;
pub mod framing;
pub(crate) mod head;
mod local;
mod proxy;
