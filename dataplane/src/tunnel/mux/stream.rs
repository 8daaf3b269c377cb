//! A stream of a muxado session: what the request path reads and writes like a
//! socket. Reads drain the bytes the session's reader buffered and give the agent
//! window back in batches; writes frame bytes within the agent's window and the
//! session's output bound; dropping the handle resets a stream both sides did not end.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::Poll;

use monoio::io::Split;

use super::{Mux, StreamShared, MAX_FRAME_BODY, OUT_HIGH, WINDOW};
use crate::tunnel::frame::{self, ErrorCode, FLAG_FIN, FLAG_SYN};

/// One stream of a session, readable and writable like a socket.
#[derive(Debug)]
pub(crate) struct MuxStream {
    pub(super) mux: Mux,
    pub(super) shared: Rc<StreamShared>,
    /// A stream we opened sends SYN with its first frame.
    pub(super) syn_pending: Cell<bool>,
}

// SAFETY: the read and write halves touch disjoint parts of the stream's state, each
// through its own `RefCell` borrow that never spans an await.
unsafe impl Split for MuxStream {}

impl MuxStream {
    fn syn_flag(&self) -> u8 {
        if self.syn_pending.replace(false) {
            FLAG_SYN
        } else {
            0
        }
    }

    /// Copies up to `len` buffered bytes to `dst`, waiting for some; 0 at the end.
    pub(crate) async fn read_into(&self, dst: *mut u8, len: usize) -> io::Result<usize> {
        let n = poll_fn(|cx| {
            let mut st = self.shared.state.borrow_mut();
            if !st.inbound.is_empty() {
                let n = len.min(st.inbound.len());
                let (a, b) = st.inbound.as_slices();
                let from_a = n.min(a.len());
                // SAFETY: the caller gives `len` writable bytes at `dst`.
                unsafe {
                    dst.copy_from_nonoverlapping(a.as_ptr(), from_a);
                    dst.add(from_a)
                        .copy_from_nonoverlapping(b.as_ptr(), n - from_a);
                }
                st.inbound.drain(..n);
                st.consumed += n as u32;
                return Poll::Ready(Ok(n));
            }
            if st.fin_in {
                return Poll::Ready(Ok(0));
            }
            if st.reset {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::ConnectionReset)));
            }
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        self.grant();
        Ok(n)
    }

    /// Gives the agent back window for what was read, in batches.
    fn grant(&self) {
        let grant = {
            let mut st = self.shared.state.borrow_mut();
            if st.reset || st.fin_in || st.consumed < WINDOW / 4 {
                0
            } else {
                let g = st.consumed;
                st.consumed = 0;
                st.recv_left += g;
                g
            }
        };
        if grant > 0 {
            let id = self.shared.id;
            self.mux.queue(|out| frame::put_wndinc(out, id, grant));
        }
    }

    /// Sends up to `len` bytes from `src` as one DATA frame, waiting for window.
    pub(crate) async fn write_from(&self, src: *const u8, len: usize) -> io::Result<usize> {
        if len == 0 {
            return Ok(0);
        }
        poll_fn(|cx| {
            let mut session = self.mux.state.borrow_mut();
            let mut st = self.shared.state.borrow_mut();
            if st.reset || session.closed.is_some() {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            }
            if st.fin_out {
                return Poll::Ready(Err(io::Error::other("write after shutdown")));
            }
            if st.send_left == 0 {
                st.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if session.out.len() >= OUT_HIGH {
                session.space_wakers.push(cx.waker().clone());
                return Poll::Pending;
            }
            let n = len.min(st.send_left as usize).min(MAX_FRAME_BODY);
            st.send_left -= n as u32;
            // SAFETY: the caller gives `len` readable bytes at `src`.
            let body = unsafe { std::slice::from_raw_parts(src, n) };
            let flags = self.syn_flag();
            frame::put_data(&mut session.out, self.shared.id, flags, body);
            if let Some(w) = session.writer_waker.take() {
                w.wake();
            }
            Poll::Ready(Ok(n))
        })
        .await
    }

    /// Sends FIN: nothing more from this side.
    pub(crate) fn finish(&self) {
        let send = {
            let mut st = self.shared.state.borrow_mut();
            if st.fin_out || st.reset {
                false
            } else {
                st.fin_out = true;
                true
            }
        };
        if send {
            let (id, flags) = (self.shared.id, FLAG_FIN | self.syn_flag());
            self.mux.queue(|out| frame::put_data(out, id, flags, &[]));
            self.mux.forget_if_done(&self.shared);
        }
    }

    /// Resets the stream (the peer sees an error, not an end).
    pub(crate) fn reset(&self, code: ErrorCode) {
        let send = {
            let mut st = self.shared.state.borrow_mut();
            let open = !(st.reset || st.fin_in && st.fin_out);
            st.reset = true;
            open
        };
        self.mux.state.borrow_mut().streams.remove(&self.shared.id);
        if send && !self.syn_pending.get() {
            let id = self.shared.id;
            self.mux.queue(|out| frame::put_rst(out, id, code));
        }
        self.shared.wake();
    }
}

impl MuxStream {
    /// Sends all of `bytes`.
    pub(crate) async fn send_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = self.write_from(bytes.as_ptr(), bytes.len()).await?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Reads into `buf` (cleared first) up to its capacity; 0 at the end.
    pub(crate) async fn recv_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        let cap = buf.capacity();
        let n = self.read_into(buf.as_mut_ptr(), cap).await?;
        // SAFETY: `read_into` initialised `n <= cap` bytes.
        unsafe { buf.set_len(n) };
        Ok(n)
    }
}

impl MuxStream {
    /// Ends this side (the traits' `shutdown`).
    async fn end_writes(&self) {
        self.finish();
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let (fin_in, fin_out, reset) = {
            let st = self.shared.state.borrow();
            (st.fin_in, st.fin_out, st.reset)
        };
        if !(reset || fin_in && fin_out) {
            if fin_in && !fin_out {
                // The peer is done and so are we: a clean end.
                self.finish();
            } else {
                self.reset(ErrorCode::StreamCancelled);
            }
        }
    }
}

crate::tunnel::rent::rent_io!(MuxStream);
