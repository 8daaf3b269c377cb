//! `innergate`: the control process and the command line.
//!
//! Start at [`serve`]: it opens the [`store`], starts the [`core`] (the one thread that
//! changes endpoints, checks them with the shared model crate, pushes tables over the
//! [`link`] and expires agent leases), the [`admin`] socket and the HTTP [`api`].
//! [`authtoken`] owns what tunnel agents authenticate with.
//! [`client`] is the API client the CLI and [`agent`] mode use; [`tunnel_agent`] is the
//! agent that dials the gateway's tunnel listener, and [`tunnel`] control's side of
//! the calls the data plane's tunnel sessions make, [`tunnel_sessions`] the API's view
//! of those sessions and the commands it sends their agents; [`up`] runs control and a
//! data plane together on one machine.

pub mod admin;
pub mod agent;
pub mod api;
pub mod authtoken;
pub mod client;
pub mod core;
pub mod endpoint;
pub mod error;
pub mod link;
pub mod metrics;
pub mod serve;
pub mod store;
pub mod tunnel;
pub mod tunnel_agent;
pub mod tunnel_sessions;
pub mod up;
