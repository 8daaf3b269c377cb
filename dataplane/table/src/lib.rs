//! The runtime-free model of innergate, shared by control and the data plane.
//!
//! Input becomes typed values here, once: [`url::EndpointUrl`] for URLs,
//! [`endpoint::Endpoint`] for endpoints, [`policy::Policy`] for traffic policies, and
//! [`table::EndpointTable`] for a whole version of the endpoint set with its
//! cross-endpoint rules. [`wire`] is the control link's codec and [`link`] a blocking
//! client for it. Nothing here does async I/O, so control never links the data plane's
//! runtime.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
pub mod endpoint;
pub mod link;
pub mod policy;
pub mod table;
pub mod tunnel_calls;
pub mod tunnel_sessions;
pub mod units;
pub mod url;
pub mod wire;

pub use endpoint::{Binding, Endpoint, EndpointKind, EndpointRecord, Upstream};
pub use policy::Policy;
pub use table::{EndpointTable, TableError};
pub use url::{EndpointUrl, HostPattern, Scheme};
