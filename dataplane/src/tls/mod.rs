//! TLS on the client side: certificates ([`certs`]), https termination ([`https`]),
//! tls passthrough and terminate-tls ([`passthrough`]) with its mutual TLS
//! ([`client_auth`]), and the ClientHello reader they route by ([`sni`]).

pub mod certs;
mod client_auth;
pub(crate) mod https;
pub(crate) mod passthrough;
pub mod sni;

pub use certs::{load_pair, CertError, CertStore};
