//! A read buffer that lends its storage to monoio's owned-buffer I/O.
//!
//! Bytes read from a socket stay here until consumed: a request head is parsed in
//! place, body bytes are written on from here without a copy (the storage is lent to
//! the write and returned), and bytes of a pipelined next request stay for the next
//! turn.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

/// Received bytes not yet consumed: `data[start..]`.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    data: Vec<u8>,
    start: usize,
}

impl ReadBuf {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        ReadBuf {
            data: Vec::with_capacity(capacity),
            start: 0,
        }
    }

    /// The unconsumed bytes. Empty after an I/O future was dropped mid-flight (the
    /// storage went with it); the connection is closed in that case anyway.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.data.get(self.start..).unwrap_or(&[])
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks `n` bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.data.len());
        if self.start >= self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Gives back storage beyond `capacity` when nothing is buffered.
    pub(crate) fn shrink_if_empty(&mut self, capacity: usize) {
        if self.is_empty() && self.data.capacity() > capacity {
            self.data = Vec::with_capacity(capacity);
            self.start = 0;
        }
    }

    /// Reads once from `src`, appending; `Ok(0)` is end of stream. Makes room first,
    /// moving unconsumed bytes to the front or growing up to `max_len` bytes in all.
    pub(crate) async fn fill<S: AsyncReadRent>(
        &mut self,
        src: &mut S,
        max_len: usize,
    ) -> io::Result<usize> {
        if self.data.len() == self.data.capacity() {
            if self.start > 0 {
                self.data.drain(..self.start);
                self.start = 0;
            } else if self.data.capacity() < max_len {
                let grow = self
                    .data
                    .capacity()
                    .max(4096)
                    .min(max_len - self.data.len());
                self.data.reserve_exact(grow);
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "read buffer full",
                ));
            }
        }
        let data = std::mem::take(&mut self.data);
        let (len, cap) = (data.len(), data.capacity());
        let (res, slice) = src.read(data.slice_mut(len..cap)).await;
        self.data = slice.into_inner();
        res
    }

    /// Writes the first `n` unconsumed bytes to `dst` and consumes them.
    pub(crate) async fn write_to<S: AsyncWriteRentExt>(
        &mut self,
        dst: &mut S,
        n: usize,
    ) -> io::Result<()> {
        debug_assert!(n <= self.len());
        if n == 0 {
            return Ok(());
        }
        let data = std::mem::take(&mut self.data);
        let (res, slice) = dst.write_all(data.slice(self.start..self.start + n)).await;
        self.data = slice.into_inner();
        res?;
        self.consume(n);
        Ok(())
    }
}

/// Writes all of `out` to `dst`, handing the buffer back for reuse.
pub(crate) async fn write_all<S: AsyncWriteRentExt>(
    dst: &mut S,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let buf = std::mem::take(out);
    let (res, mut buf) = dst.write_all(buf).await;
    buf.clear();
    *out = buf;
    res.map(|_| ())
}
