//! Confining a panic to the task that hit it. Connection tasks run through
//! [`confine`]: a bug met by one request ends that request's connection, is logged
//! and counted, and the worker goes on serving everything else (the release profile
//! unwinds for this reason).

use std::any::Any;
use std::cell::Cell;
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

thread_local! {
    /// How many confined polls this thread is inside (they nest: an exchange within
    /// its connection's task).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Makes a panic outside every confined task end the process, as the release
/// profile's `abort` used to: a worker's own loop, an accept loop or the control
/// threads cannot be confined, and a process missing one of them must not go on
/// looking healthy (a supervisor restarts it). Inside a confined task, a panic
/// unwinds to [`confine`].
pub(crate) fn abort_on_unconfined_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        if DEPTH.with(Cell::get) == 0 {
            eprintln!("innergate-dataplane: panic outside a connection; aborting");
            std::process::abort();
        }
    }));
}

/// Counts a confined poll for as long as it runs, unwinding included.
struct Inside;

impl Inside {
    fn enter() -> Inside {
        DEPTH.with(|d| d.set(d.get() + 1));
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

impl<F: Future + Unpin> Future for Confined<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        let _inside = Inside::enter();
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

/// Runs a task confined: a panic in it ends that task only (what it served sees its
/// stream or session end), never the worker. For tasks that are not a connection's
/// own (those are confined where they are accepted).
pub(crate) fn spawn<F>(what: &'static str, task: F)
where
    F: Future<Output = ()> + 'static,
{
    monoio::spawn(async move {
        if let Err(panic) = confine(Box::pin(task)).await {
            log::error!(
                "panic in {what}: {}; ending that task only",
                message(&*panic)
            );
        }
    });
}
