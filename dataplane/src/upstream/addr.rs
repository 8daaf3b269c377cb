//! Where an upstream is: plain data, computed when a table is compiled.

use std::net::SocketAddr;

use rustls::pki_types::ServerName;

/// Where an upstream is and whether to speak TLS to it (with this server name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct UpstreamAddr {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<ServerName<'static>>,
}
