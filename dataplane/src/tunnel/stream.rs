//! A stream to an agent's upstream, as the request path uses it: a stream of this
//! worker's session, or one handed over from another worker's.

use std::io;
use std::os::fd::RawFd;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::BufResult;

use super::channel::ChannelStream;
use super::mux::MuxStream;

/// A stream to an agent's upstream: on a session of this worker, or handed over.
#[derive(Debug)]
pub(crate) enum TunnelStream {
    Local(MuxStream),
    Handed(ChannelStream),
}

// SAFETY: both variants are Split.
unsafe impl Split for TunnelStream {}

/// A tunnel stream has no socket of its own; relays watch the other side's.
pub(crate) const NO_FD: RawFd = -1;

impl AsyncReadRent for TunnelStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            TunnelStream::Local(s) => s.read(buf).await,
            TunnelStream::Handed(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            TunnelStream::Local(s) => s.readv(buf).await,
            TunnelStream::Handed(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for TunnelStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            TunnelStream::Local(s) => s.write(buf).await,
            TunnelStream::Handed(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            TunnelStream::Local(s) => s.writev(buf).await,
            TunnelStream::Handed(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            TunnelStream::Local(s) => s.shutdown().await,
            TunnelStream::Handed(s) => s.shutdown().await,
        }
    }
}
