//! Draining a worker for shutdown: a flag connections check between requests, and a
//! signal idle keep-alive connections wait on, so they close at once instead of
//! after their idle timeout.
//!
//! Every idle keep-alive connection waits on the signal, so waiting must cost O(1):
//! a waiter takes a slot when first polled and gives it back when dropped.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A one-way, worker-local switch from serving to draining.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    draining: Cell<bool>,
    waiting: RefCell<Waiters>,
}

/// The wakers of pending [`Started`] futures, in reusable slots.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Waiters {
    fn insert(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(waker);
                slot
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if let Some(entry) = self.slots.get_mut(slot) {
            if entry.take().is_some() {
                self.free.push(slot);
            }
        }
    }

    /// How many futures wait.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

impl Drain {
    /// Whether the worker is draining.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining and wakes everything waiting for it.
    pub(crate) fn start(&self) {
        self.draining.set(true);
        let wakers: Vec<Waker> = {
            let mut waiting = self.waiting.borrow_mut();
            let wakers = waiting.slots.iter_mut().filter_map(Option::take).collect();
            waiting.slots.clear();
            waiting.free.clear();
            wakers
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Completes once draining has started.
    pub(crate) fn started(&self) -> Started<'_> {
        Started {
            drain: self,
            slot: None,
        }
    }
}

/// The future of [`Drain::started`].
#[derive(Debug)]
pub(crate) struct Started<'a> {
    drain: &'a Drain,
    /// This future's place among the waiters, once polled.
    slot: Option<usize>,
}

impl Future for Started<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.drain.draining.get() {
            this.slot = None; // start() emptied the slots
            return Poll::Ready(());
        }
        let mut waiting = this.drain.waiting.borrow_mut();
        match this.slot {
            Some(slot) => match &mut waiting.slots[slot] {
                Some(w) if w.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            None => this.slot = Some(waiting.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            if !self.drain.draining.get() {
                self.drain.waiting.borrow_mut().remove(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn waiters_leave_when_dropped_and_wake_when_draining() {
        let drain = Drain::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Many connections come and go: the waiters do not pile up.
        for _ in 0..1000 {
            let mut started = std::pin::pin!(drain.started());
            assert!(started.as_mut().poll(&mut cx).is_pending());
            assert!(started.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.waiting.borrow().len(), 0);
        assert_eq!(drain.waiting.borrow().slots.len(), 1);

        let mut a = Box::pin(drain.started());
        let mut b = Box::pin(drain.started());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(drain.waiting.borrow().len(), 2);
        drain.start();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_ready());
        assert!(drain.is_draining());
        assert!(std::pin::pin!(drain.started()).poll(&mut cx).is_ready());
    }
}
