//! TLS on the client side: certificates ([`certs`]), the two-step server handshake
//! ([`handshake`]) and what it establishes ([`facts`]: versions, the certificates
//! read by [`certificate`], the ClientHello's [`ja4`] fingerprint), https
//! termination ([`https`]), tls passthrough and terminate-tls ([`passthrough`]) with
//! its mutual TLS ([`client_auth`]), and the ClientHello reader they route by
//! ([`sni`]).

mod certificate;
pub mod certs;
mod client_auth;
pub(crate) mod facts;
mod handshake;
pub(crate) mod https;
mod ja4;
pub(crate) mod passthrough;
pub mod sni;

pub use certs::{load_pair, CertError, CertStore};
