//! The data plane seen from outside: the real binary, real sockets, real backends.

mod actions;
mod admin;
mod bad_input;
mod control_link;
mod expressions;
mod forward_internal;
mod forwarding;
mod hosted_docs;
mod https;
mod legacy_driver;
mod lifecycle;
mod policy;
mod request_path;
mod support;
mod tcp;
mod tunnel;
