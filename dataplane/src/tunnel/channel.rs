//! The two bounded channels that stand for a tunnel stream on another worker (see
//! [`super::handover`]): bytes in chunks each way, an end as [`Chunk::Fin`], a broken
//! stream as a dropped sender.

use std::cell::RefCell;
use std::io;

use monoio::io::Split;

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

    async fn write_from(&self, src: *const u8, len: usize) -> io::Result<usize> {
        if len == 0 {
            return Ok(0);
        }
        // SAFETY: the caller gives `len` readable bytes at `src`.
        let src = unsafe { std::slice::from_raw_parts(src, len) };
        let n = src.len().min(CHUNK);
        self.to_agent
            .send_async(Chunk::Data(src[..n].to_vec()))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(n)
    }

    async fn end_writes(&self) {
        let _ = self.to_agent.send_async(Chunk::Fin).await;
    }
}

super::rent::rent_io!(ChannelStream);
