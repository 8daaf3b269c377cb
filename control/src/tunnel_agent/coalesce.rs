//! The agent's side of the session connection, with its frames coalesced.
//!
//! The SDK's muxado writes every frame on its own and flushes it (a response's DATA,
//! then the window increment for the request it read: two TLS records and two
//! syscalls per request). Here a flush only wakes a flusher task: it runs once the
//! tasks ready now have run, so every frame they queued in the meantime leaves in
//! one write, as large TLS records. Nothing waits for a timer or an acknowledgement
//! (unlike Nagle's algorithm): a lone frame leaves as soon as the runtime turns.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes queued above which writes wait for the flusher (the SDK's own window keeps
/// the sum far below this in practice; the bound is for a gateway that stops reading).
const HIGH: usize = 1 << 20;

/// How long the flusher still tries to send what was queued once the connection was
/// dropped (a GOAWAY, usually): a gateway that stopped reading does not keep the
/// socket for as long as TCP retries.
const LINGER: Duration = Duration::from_secs(1);

/// A connection whose writes are gathered and sent by a flusher task.
pub(crate) struct Coalesced<T> {
    shared: Arc<Mutex<State<T>>>,
}

struct State<T> {
    io: T,
    /// Written by the SDK; `out[sent..]` is not yet handed to `io`.
    out: Vec<u8>,
    sent: usize,
    /// The first write error: every later write and flush fails with it.
    failed: Option<(io::ErrorKind, String)>,
    /// The handle was dropped: the flusher sends what is left and ends.
    dropped: bool,
    flusher: Option<Waker>,
    /// A write waiting for `out` to drain below [`HIGH`].
    room: Option<Waker>,
}

impl<T: AsyncWrite + Unpin + Send + 'static> Coalesced<T> {
    /// Wraps `io` and spawns its flusher on the current runtime.
    pub(crate) fn new(io: T) -> Coalesced<T> {
        let shared = Arc::new(Mutex::new(State {
            io,
            out: Vec::with_capacity(64 * 1024),
            sent: 0,
            failed: None,
            dropped: false,
            flusher: None,
            room: None,
        }));
        tokio::spawn(flusher(shared.clone()));
        Coalesced { shared }
    }
}

impl<T> Coalesced<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.shared)
    }
}

fn lock<T>(shared: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
    // Every holder only moves bytes between buffers: a panic cannot leave the state
    // half-changed in a way that matters more than the panic itself.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> State<T> {
    fn error(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, why)| io::Error::new(*kind, why.clone()))
    }

    fn wake_flusher(&mut self) {
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }
}

impl<T: AsyncWrite + Unpin> State<T> {
    /// Bytes queued and not yet handed to `io`.
    fn queued(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Hands queued bytes to `io` and flushes it; `Ready` once none is left.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = loop {
            if self.sent == self.out.len() {
                break Pin::new(&mut self.io).poll_flush(cx);
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent >= self.queued() {
            // Moves at most as many bytes as were sent since: linear in all.
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        if self.queued() < HIGH {
            if let Some(w) = self.room.take() {
                w.wake();
            }
        }
        if let Poll::Ready(Err(e)) = &result {
            self.failed = Some((e.kind(), e.to_string()));
            if let Some(w) = self.room.take() {
                w.wake();
            }
        }
        result
    }
}

/// Sends what the SDK queued whenever it flushes, until the handle is dropped.
async fn flusher<T: AsyncWrite + Unpin>(shared: Arc<Mutex<State<T>>>) {
    let work = std::future::poll_fn(|cx| loop {
        let mut st = lock(&shared);
        if st.failed.is_some() {
            return Poll::Ready(());
        }
        if st.queued() == 0 {
            if st.dropped {
                return Poll::Ready(());
            }
            st.flusher = Some(cx.waker().clone());
            return Poll::Pending;
        }
        match st.poll_send(cx) {
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Pending => {
                // `io` wakes this task once it can take more; a drop meanwhile must
                // be seen too, to bound the linger.
                st.flusher = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
    });
    tokio::pin!(work);
    // Without a bound while the handle lives; once it is dropped, for LINGER more.
    tokio::select! {
        () = &mut work => return,
        () = dropped(&shared) => {}
    }
    let _ = tokio::time::timeout(LINGER, work).await;
}

/// Ready once the handle was dropped. It needs no waker of its own: whenever `work`
/// is pending, the task's waker is in `flusher`, which the drop wakes.
async fn dropped<T>(shared: &Mutex<State<T>>) {
    std::future::poll_fn(|_| {
        if lock(shared).dropped {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

impl<T> Drop for Coalesced<T> {
    fn drop(&mut self) {
        let mut st = self.state();
        st.dropped = true;
        st.wake_flusher();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.state().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.state();
        if let Some(e) = st.error() {
            return Poll::Ready(Err(e));
        }
        if st.queued() >= HIGH {
            st.room = Some(cx.waker().clone());
            st.wake_flusher();
            return Poll::Pending;
        }
        st.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Wakes the flusher and returns at once: that is the coalescing.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state();
        if let Some(e) = st.error() {
            return Poll::Ready(Err(e));
        }
        st.wake_flusher();
        Poll::Ready(Ok(()))
    }

    /// Sends everything queued, then shuts `io` down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state();
        if let Some(e) = st.error() {
            return Poll::Ready(Err(e));
        }
        std::task::ready!(st.poll_send(cx))?;
        Pin::new(&mut st.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Counts the writes that reach the connection.
    struct Counting {
        inner: tokio::io::DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let done = Pin::new(&mut self.inner).poll_write(cx, buf);
            if let Poll::Ready(Ok(_)) = done {
                self.writes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            done
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn frames_flushed_in_one_turn_leave_in_one_write_in_order() {
        let (near, mut far) = tokio::io::duplex(4 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut io = Coalesced::new(Counting {
            inner: near,
            writes: writes.clone(),
        });
        for i in 0..100u8 {
            io.write_all(&[i; 10]).await.unwrap();
            io.flush().await.unwrap();
        }
        let mut got = vec![0u8; 1000];
        far.read_exact(&mut got).await.unwrap();
        let want: Vec<u8> = (0..100u8).flat_map(|i| [i; 10]).collect();
        assert_eq!(got, want);
        assert_eq!(
            writes.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "a hundred flushes in one turn of the runtime are one write"
        );
    }

    #[tokio::test]
    async fn a_reader_that_stops_holds_writes_at_the_bound_and_a_drop_sends_the_rest() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut io = Coalesced::new(near);
        let chunk = vec![7u8; 256 * 1024];
        let mut queued = 0usize;
        // Nobody reads `far`: writes are taken until the queue passes the bound, then wait.
        loop {
            let write = io.write_all(&chunk);
            match tokio::time::timeout(Duration::from_millis(200), write).await {
                Ok(done) => {
                    done.unwrap();
                    queued += chunk.len();
                }
                Err(_) => break,
            }
            assert!(
                queued <= HIGH + 64 * 1024 + chunk.len(),
                "unbounded: {queued}"
            );
        }
        io.flush().await.unwrap();
        drop(io);
        // What was taken still arrives, once the reader reads.
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert!(got.len() >= queued, "{} of {queued}", got.len());
        assert!(got.iter().all(|b| *b == 7));
    }
}
