//! TLS on the client side: certificates ([`certs`]), https termination ([`https`]),
//! tls passthrough and terminate-tls ([`passthrough`]), and the ClientHello reader
//! they route by ([`sni`]).

pub mod certs;
pub(crate) mod https;
pub(crate) mod passthrough;
pub mod sni;

pub use certs::{load_pair, CertError, CertStore};
