//! Control seen from outside: the real `innergate` and `innergate-dataplane` binaries.

mod agent;
mod api;
mod authtokens;
mod cli;
mod held_by;
mod hosted_policies;
mod lifecycle;
mod support;
mod tunnel;
