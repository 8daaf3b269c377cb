//! Confining a panic to the task that hit it. Connection tasks run through
//! [`confine`]: a bug met by one request ends that request's connection, is logged
//! and counted, and the worker goes on serving everything else (the release profile
//! unwinds for this reason).

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future of [`confine`].
#[derive(Debug)]
pub(crate) struct Confined<F>(F);

/// Runs `future`, turning a panic in any of its polls into `Err` with the payload.
///
/// Unwind safety is asserted, not proven: after a panic the caller only reads plain
/// counters and byte counts of the exchange and closes the connection, whose state
/// is never used for another request.
pub(crate) fn confine<F: Future + Unpin>(future: F) -> Confined<F> {
    Confined(future)
}

impl<F: Future + Unpin> Future for Confined<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The message of a panic payload, for the log line.
pub(crate) fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
