//! Draining a worker for shutdown: a flag connections check between requests, and a
//! signal idle keep-alive connections wait on, so they close at once instead of
//! after their idle timeout.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A one-way, worker-local switch from serving to draining.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    draining: Cell<bool>,
    waiting: RefCell<Vec<Waker>>,
}

impl Drain {
    /// Whether the worker is draining.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining and wakes everything waiting for it.
    pub(crate) fn start(&self) {
        self.draining.set(true);
        for waker in self.waiting.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Completes once draining has started.
    pub(crate) fn started(&self) -> Started<'_> {
        Started(self)
    }
}

/// The future of [`Drain::started`].
pub(crate) struct Started<'a>(&'a Drain);

impl Future for Started<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.draining.get() {
            return Poll::Ready(());
        }
        let mut waiting = self.0.waiting.borrow_mut();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
