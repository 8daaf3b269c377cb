//! monoio's owned-buffer I/O traits for the tunnel's byte streams, written once: a
//! stream that can read into and write from raw memory (`read_into`, `write_from`)
//! and end its sending side (`end_writes`) gets `AsyncReadRent` and `AsyncWriteRent`
//! from [`rent_io!`]. Vectored calls use the first buffer (a short read or write, as
//! the traits allow).

/// Implements `AsyncReadRent` and `AsyncWriteRent` for `$ty`, which has
/// `async fn read_into(&self, *mut u8, usize) -> io::Result<usize>`,
/// `async fn write_from(&self, *const u8, usize) -> io::Result<usize>` and
/// `async fn end_writes(&self)`.
macro_rules! rent_io {
    ($ty:ty) => {
        impl monoio::io::AsyncReadRent for $ty {
            async fn read<T: monoio::buf::IoBufMut>(
                &mut self,
                mut buf: T,
            ) -> monoio::BufResult<usize, T> {
                let len = buf.bytes_total();
                let res = self.read_into(buf.write_ptr(), len).await;
                if let Ok(n) = res {
                    // SAFETY: `read_into` initialised `n` bytes.
                    unsafe { buf.set_init(n) };
                }
                (res, buf)
            }

            async fn readv<T: monoio::buf::IoVecBufMut>(
                &mut self,
                mut buf: T,
            ) -> monoio::BufResult<usize, T> {
                use monoio::buf::IoBufMut as _;
                // SAFETY: the raw view of the first iovec lives only for this call.
                let Some(mut raw) = (unsafe { monoio::buf::RawBuf::new_from_iovec_mut(&mut buf) })
                else {
                    return (Ok(0), buf);
                };
                let len = raw.bytes_total();
                let res = self.read_into(raw.write_ptr(), len).await;
                if let Ok(n) = res {
                    // SAFETY: `read_into` initialised `n` bytes of the first iovec.
                    unsafe { buf.set_init(n) };
                }
                (res, buf)
            }
        }

        impl monoio::io::AsyncWriteRent for $ty {
            async fn write<T: monoio::buf::IoBuf>(
                &mut self,
                buf: T,
            ) -> monoio::BufResult<usize, T> {
                let res = self.write_from(buf.read_ptr(), buf.bytes_init()).await;
                (res, buf)
            }

            async fn writev<T: monoio::buf::IoVecBuf>(
                &mut self,
                buf: T,
            ) -> monoio::BufResult<usize, T> {
                use monoio::buf::IoBuf as _;
                // SAFETY: the raw view of the first iovec lives only for this call.
                let Some(raw) = (unsafe { monoio::buf::RawBuf::new_from_iovec(&buf) }) else {
                    return (Ok(0), buf);
                };
                let res = self.write_from(raw.read_ptr(), raw.bytes_init()).await;
                (res, buf)
            }

            async fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }

            async fn shutdown(&mut self) -> std::io::Result<()> {
                self.end_writes().await;
                Ok(())
            }
        }
    };
}

pub(crate) use rent_io;
