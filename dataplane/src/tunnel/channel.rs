//! The two bounded channels that stand for a tunnel stream on another worker (see
//! [`super::handover`]): bytes in chunks each way, an end as [`Chunk::Fin`], a broken
//! stream as a dropped sender.

use std::cell::RefCell;
use std::io;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::BufResult;

/// Chunks in flight per direction: with 64 KiB reads, a few windows' worth.
const DEPTH: usize = 8;
/// The largest chunk.
pub(crate) const CHUNK: usize = 64 * 1024;

/// A request to open a stream on the receiving worker's session.
#[derive(Debug)]
pub(crate) struct Handover {
    pub(crate) endpoint: Box<str>,
    pub(crate) client_addr: String,
    pub(crate) reply: flume::Sender<Option<ChannelStream>>,
}

/// A piece of a handed-over stream.
#[derive(Debug)]
pub(crate) enum Chunk {
    Data(Vec<u8>),
    Fin,
}

/// The asking worker's side of a handed-over stream.
#[derive(Debug)]
pub(crate) struct ChannelStream {
    to_agent: flume::Sender<Chunk>,
    from_agent: flume::Receiver<Chunk>,
    /// What the last chunk left over.
    pending: RefCell<(Vec<u8>, usize)>,
}

// SAFETY: reads touch `from_agent` and `pending`, writes `to_agent`: disjoint.
unsafe impl Split for ChannelStream {}

/// A new pair: the asking worker's stream, and the owning worker's ends (what goes to
/// the agent, what comes from it).
pub(crate) fn pair() -> (ChannelStream, flume::Receiver<Chunk>, flume::Sender<Chunk>) {
    let (up_tx, up_rx) = flume::bounded::<Chunk>(DEPTH);
    let (down_tx, down_rx) = flume::bounded::<Chunk>(DEPTH);
    let stream = ChannelStream {
        to_agent: up_tx,
        from_agent: down_rx,
        pending: RefCell::new((Vec::new(), 0)),
    };
    (stream, up_rx, down_tx)
}

impl ChannelStream {
    async fn read_into(&self, dst: *mut u8, len: usize) -> io::Result<usize> {
        {
            let mut pending = self.pending.borrow_mut();
            let (buf, at) = &mut *pending;
            if *at < buf.len() {
                let n = len.min(buf.len() - *at);
                // SAFETY: the caller gives `len` writable bytes at `dst`.
                unsafe { dst.copy_from_nonoverlapping(buf.as_ptr().add(*at), n) };
                *at += n;
                return Ok(n);
            }
        }
        match self.from_agent.recv_async().await {
            Ok(Chunk::Data(bytes)) => {
                let n = len.min(bytes.len());
                // SAFETY: as above.
                unsafe { dst.copy_from_nonoverlapping(bytes.as_ptr(), n) };
                *self.pending.borrow_mut() = (bytes, n);
                Ok(n)
            }
            Ok(Chunk::Fin) => Ok(0),
            Err(_) => Err(io::ErrorKind::ConnectionReset.into()),
        }
    }

    async fn write_from(&self, src: &[u8]) -> io::Result<usize> {
        if src.is_empty() {
            return Ok(0);
        }
        let n = src.len().min(CHUNK);
        self.to_agent
            .send_async(Chunk::Data(src[..n].to_vec()))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(n)
    }
}

impl AsyncReadRent for ChannelStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let len = buf.bytes_total();
        match self.read_into(buf.write_ptr(), len).await {
            Ok(n) => {
                // SAFETY: `read_into` initialised `n` bytes.
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw view of the first iovec lives only for this call.
        let Some(mut raw) = (unsafe { RawBuf::new_from_iovec_mut(&mut buf) }) else {
            return (Ok(0), buf);
        };
        let len = raw.bytes_total();
        match self.read_into(raw.write_ptr(), len).await {
            Ok(n) => {
                // SAFETY: `read_into` initialised `n` bytes of the first iovec.
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }
}

impl AsyncWriteRent for ChannelStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `buf` holds `bytes_init` readable bytes for this call.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let res = self.write_from(src).await;
        (res, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw view of the first iovec lives only for this call.
        let Some(raw) = (unsafe { RawBuf::new_from_iovec(&buf) }) else {
            return (Ok(0), buf);
        };
        // SAFETY: as in `write`.
        let src = unsafe { std::slice::from_raw_parts(raw.read_ptr(), raw.bytes_init()) };
        let res = self.write_from(src).await;
        (res, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        let _ = self.to_agent.send_async(Chunk::Fin).await;
        Ok(())
    }
}
