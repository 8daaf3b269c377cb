//! A muxado session on one worker: many byte streams over one TLS connection, with
//! per-stream flow control, owned by the worker's thread (`Rc`, no locks).
//!
//! Two tasks run it: the reader decodes frames and hands bytes to streams, the writer
//! sends what streams and the reader queued. A stream's handle reads and writes
//! through the session; dropping it resets the stream unless both sides closed it.
//!
//! Windows: neither side may have more than [`WINDOW`] bytes in flight on a stream
//! (the reference implementation's default, which its peers assume: the protocol
//! does not negotiate it). A peer that sends beyond it has the stream reset.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};

use super::frame::{self, ErrorCode, Frame, FLAG_FIN, FLAG_SYN};
use crate::fast_map::FastMap;

mod stream;

pub(crate) use stream::MuxStream;

/// Bytes a stream may have in flight each way.
pub(crate) const WINDOW: u32 = 256 * 1024;
/// The largest DATA frame this side sends.
const MAX_FRAME_BODY: usize = 64 * 1024;
/// Queued output above which stream writes wait for the writer: a peer that stops
/// reading holds at most this much of ours (plus control frames).
const OUT_HIGH: usize = 1 << 20;
/// Streams an agent may have open at once; more are refused.
pub(crate) const MAX_PEER_STREAMS: usize = 256;
/// Reads shorter than this are acknowledged at once (see [`quick_ack`]). The reader
/// gets at most a TLS record's plaintext (16 KiB) at a time: half of that is short.
const QUICKACK_BELOW: usize = 8 * 1024;
/// Incoming streams not yet taken by the session; more are refused.
const MAX_PENDING: usize = 32;

/// Why a session ended, in words for logs.
pub(crate) type CloseReason = Rc<str>;

#[derive(Debug, Default)]
struct StreamState {
    inbound: VecDeque<u8>,
    /// The peer sent FIN: no more bytes after `inbound`.
    fin_in: bool,
    /// We sent FIN.
    fin_out: bool,
    /// Reset by either side, or the session ended.
    reset: bool,
    /// What the peer may still send before we grant more.
    recv_left: u32,
    /// Bytes read by the handle and not yet granted back.
    consumed: u32,
    /// What we may still send.
    send_left: u32,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

#[derive(Debug)]
struct StreamShared {
    id: u32,
    state: RefCell<StreamState>,
}

impl StreamShared {
    fn new(id: u32) -> Rc<StreamShared> {
        Rc::new(StreamShared {
            id,
            state: RefCell::new(StreamState {
                recv_left: WINDOW,
                send_left: WINDOW,
                ..StreamState::default()
            }),
        })
    }

    fn wake(&self) {
        let mut st = self.state.borrow_mut();
        if let Some(w) = st.read_waker.take() {
            w.wake();
        }
        if let Some(w) = st.write_waker.take() {
            w.wake();
        }
    }
}

#[derive(Debug, Default)]
struct SessionState {
    streams: FastMap<u32, Rc<StreamShared>>,
    /// Streams the agent opened that the session has not taken yet.
    pending: VecDeque<MuxStream>,
    accept_waker: Option<Waker>,
    /// Encoded frames waiting for the writer.
    out: Vec<u8>,
    writer_waker: Option<Waker>,
    /// Stream writes waiting for `out` to drain.
    space_wakers: Vec<Waker>,
    next_local: u32,
    last_peer: u32,
    closed: Option<CloseReason>,
    /// When the peer last sent a frame.
    last_seen: Option<Instant>,
}

/// One muxado session. Cheap to clone (an `Rc`).
#[derive(Debug, Clone)]
pub(crate) struct Mux {
    state: Rc<RefCell<SessionState>>,
    /// The socket underneath, shut down to end a session whose peer went silent.
    fd: RawFd,
    /// How many of the reader and writer tasks still hold the connection: while one
    /// does, `fd` is still this session's socket.
    io_held: Rc<Cell<u8>>,
}

/// Counts a task's hold on the connection for as long as it runs.
struct IoHold(Rc<Cell<u8>>);

impl Drop for IoHold {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Mux {
    /// Starts a server-side session over `io`, whose socket is `fd`.
    pub(crate) fn start<IO>(io: IO, fd: RawFd) -> Mux
    where
        IO: AsyncReadRent + AsyncWriteRent + Split + 'static,
    {
        use monoio::io::Splitable;
        let mux = Mux {
            state: Rc::new(RefCell::new(SessionState {
                next_local: 2,
                last_seen: Some(Instant::now()),
                ..SessionState::default()
            })),
            fd,
            io_held: Rc::new(Cell::new(2)),
        };
        let (read, write) = io.into_split();
        crate::confine::spawn("a tunnel session's reader", read_loop(mux.clone(), read));
        crate::confine::spawn("a tunnel session's writer", write_loop(mux.clone(), write));
        mux
    }

    /// Whether `other` is this same session.
    pub(crate) fn same(&self, other: &Mux) -> bool {
        Rc::ptr_eq(&self.state, &other.state)
    }

    /// Why the session ended, if it did.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.state.borrow().closed.clone()
    }

    /// When the peer last sent anything.
    pub(crate) fn last_seen(&self) -> Instant {
        self.state.borrow().last_seen.unwrap_or_else(Instant::now)
    }

    /// Ends the session: a GOAWAY if the connection still works, every stream reset,
    /// the socket shut down so that both tasks end.
    pub(crate) fn close(&self, code: ErrorCode, reason: &str) {
        let (streams, pending) = {
            let mut st = self.state.borrow_mut();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason.into());
            let last = st.last_peer;
            frame::put_goaway(&mut st.out, last, code, reason);
            if let Some(w) = st.writer_waker.take() {
                w.wake();
            }
            if let Some(w) = st.accept_waker.take() {
                w.wake();
            }
            for w in st.space_wakers.drain(..) {
                w.wake();
            }
            // Taken out, not cleared in place: dropping a stream handle resets it,
            // which borrows the session state again.
            (
                std::mem::take(&mut st.streams),
                std::mem::take(&mut st.pending),
            )
        };
        drop(pending);
        for (_, s) in streams {
            s.state.borrow_mut().reset = true;
            s.wake();
        }
        // The GOAWAY gets a moment to leave; a peer that stopped reading (or whose
        // packets vanish) would otherwise keep the writer, and the socket, for as long
        // as TCP retransmits.
        let mux = self.clone();
        crate::confine::spawn("a tunnel session's close", async move {
            monoio::time::sleep(std::time::Duration::from_secs(1)).await;
            mux.shutdown_socket();
        });
    }

    /// Shuts the socket down, which ends both tasks.
    fn shutdown_socket(&self) {
        if self.io_held.get() == 0 {
            // Both tasks ended and the socket is closed: its fd may be another's now.
            return;
        }
        // SAFETY: shutdown(2) on the socket this session owns: a task still holds it
        // open (checked above, on this thread), so the fd cannot have been reused.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }

    /// Opens a stream towards the agent.
    pub(crate) fn open(&self) -> io::Result<MuxStream> {
        let mut st = self.state.borrow_mut();
        if st.closed.is_some() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let id = st.next_local;
        if id > 0x7FFF_FFFE {
            return Err(io::Error::other("stream ids exhausted"));
        }
        st.next_local += 2;
        let shared = StreamShared::new(id);
        st.streams.insert(id, shared.clone());
        Ok(MuxStream {
            mux: self.clone(),
            shared,
            syn_pending: Cell::new(true),
        })
    }

    /// The next stream the agent opened; `None` once the session ended.
    pub(crate) async fn accept(&self) -> Option<MuxStream> {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if let Some(s) = st.pending.pop_front() {
                return Poll::Ready(Some(s));
            }
            if st.closed.is_some() {
                return Poll::Ready(None);
            }
            st.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn queue(&self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut st = self.state.borrow_mut();
        if st.closed.is_some() {
            return;
        }
        f(&mut st.out);
        if let Some(w) = st.writer_waker.take() {
            w.wake();
        }
    }

    /// Handles one frame from the agent; `Err` ends the session.
    fn on_frame(&self, frame: Frame<'_>) -> Result<(), (ErrorCode, &'static str)> {
        self.state.borrow_mut().last_seen = Some(Instant::now());
        match frame {
            Frame::Data {
                stream,
                flags,
                body,
            } => self.on_data(stream, flags, body),
            Frame::WndInc { stream, increment } => {
                let shared = self.state.borrow().streams.get(&stream).cloned();
                if let Some(s) = shared {
                    {
                        let mut st = s.state.borrow_mut();
                        st.send_left = st.send_left.saturating_add(increment).min(i32::MAX as u32);
                    }
                    s.wake();
                }
                Ok(())
            }
            Frame::Rst { stream, .. } => {
                let shared = self.state.borrow_mut().streams.remove(&stream);
                if let Some(s) = shared {
                    s.state.borrow_mut().reset = true;
                    s.wake();
                }
                Ok(())
            }
            Frame::GoAway { .. } => Err((ErrorCode::None, "the agent went away")),
        }
    }

    fn on_data(&self, id: u32, flags: u8, body: &[u8]) -> Result<(), (ErrorCode, &'static str)> {
        let existing = self.state.borrow().streams.get(&id).cloned();
        let shared = match existing {
            Some(s) => s,
            None if flags & FLAG_SYN != 0 => {
                if id % 2 == 0 {
                    return Err((ErrorCode::Protocol, "the agent opened an even stream id"));
                }
                let mut st = self.state.borrow_mut();
                if id <= st.last_peer {
                    return Err((ErrorCode::Protocol, "stream ids must increase"));
                }
                st.last_peer = id;
                let peer_open = st.streams.keys().filter(|k| *k % 2 == 1).count();
                if peer_open >= MAX_PEER_STREAMS || st.pending.len() >= MAX_PENDING {
                    frame::put_rst(&mut st.out, id, ErrorCode::StreamsExhausted);
                    if let Some(w) = st.writer_waker.take() {
                        w.wake();
                    }
                    return Ok(());
                }
                let shared = StreamShared::new(id);
                st.streams.insert(id, shared.clone());
                st.pending.push_back(MuxStream {
                    mux: self.clone(),
                    shared: shared.clone(),
                    syn_pending: Cell::new(false),
                });
                if let Some(w) = st.accept_waker.take() {
                    w.wake();
                }
                shared
            }
            None => {
                // A stream that ended on our side: tell the peer once.
                if !body.is_empty() {
                    self.queue(|out| frame::put_rst(out, id, ErrorCode::StreamClosed));
                }
                return Ok(());
            }
        };
        let overflow = {
            let mut st = shared.state.borrow_mut();
            let after_fin = st.fin_in && !body.is_empty();
            if after_fin || body.len() as u64 > u64::from(st.recv_left) {
                true
            } else {
                st.recv_left -= body.len() as u32;
                st.inbound.extend(body);
                if flags & FLAG_FIN != 0 {
                    st.fin_in = true;
                }
                false
            }
        };
        if overflow {
            // More than the window, or bytes after FIN: this stream is broken.
            self.state.borrow_mut().streams.remove(&id);
            shared.state.borrow_mut().reset = true;
            let code = ErrorCode::FlowControl;
            self.queue(|out| frame::put_rst(out, id, code));
        }
        shared.wake();
        self.forget_if_done(&shared);
        Ok(())
    }

    /// Drops a stream from the table once both sides sent FIN (the handle may live on
    /// to read what is buffered).
    fn forget_if_done(&self, shared: &StreamShared) {
        let done = {
            let st = shared.state.borrow();
            st.fin_in && st.fin_out
        };
        if done {
            self.state.borrow_mut().streams.remove(&shared.id);
        }
    }
}

async fn read_loop<R: AsyncReadRent>(mux: Mux, read: R) {
    // Declared before `read`, so dropped after it: the count falls once the half is gone.
    let _hold = IoHold(mux.io_held.clone());
    let mut read = read;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut start = 0usize;
    let reason: (ErrorCode, String) = 'session: loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            // Keep room to read into: move what is left of a partial frame to the front.
            buf.drain(..start);
            start = 0;
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = read.read(buf.slice_mut(len..cap)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => break (ErrorCode::None, "the agent closed the connection".into()),
            // A large read is part of a stream of bytes, not a sender waiting for an
            // ACK; acknowledging every segment of a bulk stream at once costs per byte.
            Ok(n) if n < QUICKACK_BELOW => quick_ack(mux.fd),
            Ok(_) => {}
            Err(e) => break (ErrorCode::None, format!("connection: {e}")),
        }
        if mux.closed().is_some() {
            return;
        }
        loop {
            match frame::decode(&buf[start..]) {
                Ok(Some((f, used))) => {
                    if let Err((code, why)) = mux.on_frame(f) {
                        break 'session (code, why.into());
                    }
                    start += used;
                }
                Ok(None) => break,
                Err(e) => break 'session (ErrorCode::Protocol, format!("bad frame: {e:?}")),
            }
        }
        if start == buf.len() {
            buf.clear();
            start = 0;
        }
    };
    mux.close(reason.0, &reason.1);
}

/// Acknowledges what arrived at once. An agent that leaves Nagle on (the SDKs do)
/// sends the second piece of a response only once the first is acknowledged, and
/// Linux delays ACKs by up to 40 ms: the flag is reset by the kernel, so it is set
/// again after every short read.
fn quick_ack(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) with a pointer to a live c_int on the socket this task
    // reads from (held open by it).
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

async fn write_loop<W: AsyncWriteRent>(mux: Mux, write: W) {
    let _hold = IoHold(mux.io_held.clone());
    let mut write = write;
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let closing = poll_fn(|cx| {
            let mut st = mux.state.borrow_mut();
            if !st.out.is_empty() {
                spare.clear();
                std::mem::swap(&mut st.out, &mut spare);
                for w in st.space_wakers.drain(..) {
                    w.wake();
                }
                return Poll::Ready(st.closed.is_some());
            }
            if st.closed.is_some() {
                return Poll::Ready(true);
            }
            st.writer_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !spare.is_empty() {
            let (res, back) = write.write_all(std::mem::take(&mut spare)).await;
            spare = back;
            if let Err(e) = res {
                mux.close(ErrorCode::None, &format!("connection: {e}"));
                mux.shutdown_socket();
                return;
            }
        }
        if closing {
            // The GOAWAY went out (or could not): end the connection.
            let _ = write.shutdown().await;
            mux.shutdown_socket();
            return;
        }
    }
}
