//! Fault triggers for tests of what the data plane does when its own code fails.
//! They exist only in builds with the `fault-injection` feature, which the test
//! suites enable (a dev-dependency of the crate on itself) and no release build has:
//! there, [`trip`] is an empty function.

use crate::http::head::RequestHead;

/// The request header that names the point where a test wants a panic.
#[cfg(feature = "fault-injection")]
const FAULT_HEADER: &str = "x-innergate-fault";

/// Panics when the request asks for a panic at `point`.
#[cfg(feature = "fault-injection")]
pub(crate) fn trip(req: &RequestHead, point: &str) {
    if req
        .headers
        .get_all(FAULT_HEADER)
        .any(|v| v == point.as_bytes())
    {
        panic!("fault injected at {point}");
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn trip(_: &RequestHead, _: &str) {}
