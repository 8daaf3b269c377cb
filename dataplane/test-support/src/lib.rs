//! `innergate-test-support`: what the integration suites of `innergate-dataplane`
//! and `innergate` (control) both need, written once. Dev-only; never published.
//!
//! - [`process`]: a child that is killed when the test ends ([`KillOnDrop`]), a
//!   child's stderr in a log file, and [`eventually`], the one way tests wait: on a
//!   condition, with a deadline, never on a sleep.
//! - [`http`]: a small blocking HTTP/1.1 client ([`HttpConn`], [`get`], [`raw`])
//!   that reads exactly what a server sent, so tests can assert on framing.
//! - [`tls`]: a rustls client (ring provider) trusting only a test CA, and [`ca`],
//!   such a CA ([`TestCa`]) with the leaves it signs.
//! - [`netns`]: a network namespace of the test's own ([`Netns`]), linked to the root
//!   namespace by a veth pair, for services only a tunnel agent can reach.
//! - [`mmdb`]: small MaxMind DB files ([`TestGeoDb`]) with GeoLite2 City and ASN
//!   records, for the geo and IP-intelligence policy variables.
//!
//! Each suite's `support.rs` re-exports these next to its own fixtures.

pub mod ca;
pub mod http;
pub mod mmdb;
pub mod netns;
pub mod process;
pub mod tls;

pub use ca::TestCa;
pub use http::{get, raw, read_chunked, read_head, HttpConn, Response};
pub use mmdb::{AsnRecord, CityRecord, TestGeoDb};
pub use netns::Netns;
pub use process::{
    eventually, eventually_some, eventually_within, signal, start_until, KillOnDrop, StopOnDrop,
    POLL, TIMEOUT,
};
pub use tls::{tls_client_config, tls_client_config_pem, tls_connect, tls_get, TlsStream};
