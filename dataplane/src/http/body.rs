//! Streaming a body from one socket to another by its framing, a buffer at a time, so
//! a body of any size costs one buffer of memory.

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::buf::ReadBuf;
use super::framing::{BodyLength, Chunk, ChunkedDecoder};

/// The largest buffer a body is moved through.
pub(crate) const BODY_BUFFER: usize = 64 * 1024;

/// Why a body could not be moved, by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyError {
    /// The sender failed, closed early or timed out.
    Source,
    /// The sender's chunked framing is invalid.
    Framing,
    /// The receiver failed or timed out.
    Sink,
    /// The body is longer than allowed.
    TooLarge,
}

/// Whether chunked framing is passed on or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunking {
    /// Chunked to chunked: the framing is checked and forwarded as is.
    Keep,
    /// Chunked to a close-delimited body (for HTTP/1.0 clients).
    Remove,
}

/// Moves one body of `length` from `src` (with bytes already in `rb`) to `dst`, adding
/// the bytes written to `moved` (framing included) as they go. Every read and write
/// must finish within `timeout`. A chunked body whose payload would pass `limit` bytes
/// stops before the chunk that passes it, with [`CopyError::TooLarge`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn copy<R: AsyncReadRent, W: AsyncWriteRentExt>(
    src: &mut R,
    rb: &mut ReadBuf,
    dst: &mut W,
    length: BodyLength,
    chunking: Chunking,
    timeout: Duration,
    moved: &mut u64,
    limit: u64,
) -> Result<(), CopyError> {
    match length {
        BodyLength::Empty => Ok(()),
        BodyLength::Fixed(mut remaining) => {
            while remaining > 0 {
                if rb.is_empty() {
                    fill(src, rb, timeout).await?;
                }
                let n = (rb.len() as u64).min(remaining) as usize;
                write(rb, dst, n, timeout, moved).await?;
                remaining -= n as u64;
            }
            Ok(())
        }
        BodyLength::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            let mut payload = 0u64;
            loop {
                if rb.is_empty() {
                    fill(src, rb, timeout).await?;
                }
                match chunking {
                    Chunking::Keep => {
                        // Classify all we have, then forward it in one write.
                        let mut pass = 0;
                        let mut done = false;
                        while pass < rb.len() {
                            match decoder.next(&rb.bytes()[pass..]) {
                                Ok(Chunk::Data(n)) => {
                                    payload += n as u64;
                                    if payload > limit {
                                        return Err(CopyError::TooLarge);
                                    }
                                    pass += n;
                                }
                                Ok(Chunk::Framing(n)) => pass += n,
                                Ok(Chunk::End(n)) => {
                                    pass += n;
                                    done = true;
                                    break;
                                }
                                Err(_) => return Err(CopyError::Framing),
                            }
                        }
                        write(rb, dst, pass, timeout, moved).await?;
                        if done {
                            return Ok(());
                        }
                    }
                    Chunking::Remove => {
                        while !rb.is_empty() {
                            match decoder.next(rb.bytes()) {
                                Ok(Chunk::Data(n)) => {
                                    payload += n as u64;
                                    if payload > limit {
                                        return Err(CopyError::TooLarge);
                                    }
                                    write(rb, dst, n, timeout, moved).await?
                                }
                                Ok(Chunk::Framing(n)) => rb.consume(n),
                                Ok(Chunk::End(n)) => {
                                    rb.consume(n);
                                    return Ok(());
                                }
                                Err(_) => return Err(CopyError::Framing),
                            }
                        }
                    }
                }
            }
        }
        BodyLength::UntilClose => loop {
            if rb.is_empty() {
                match monoio::time::timeout(timeout, rb.fill(src, BODY_BUFFER)).await {
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return Err(CopyError::Source),
                }
            }
            let n = rb.len();
            write(rb, dst, n, timeout, moved).await?;
        },
    }
}

async fn fill<R: AsyncReadRent>(
    src: &mut R,
    rb: &mut ReadBuf,
    timeout: Duration,
) -> Result<(), CopyError> {
    match monoio::time::timeout(timeout, rb.fill(src, BODY_BUFFER)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(CopyError::Source),
    }
}

async fn write<W: AsyncWriteRentExt>(
    rb: &mut ReadBuf,
    dst: &mut W,
    n: usize,
    timeout: Duration,
    moved: &mut u64,
) -> Result<(), CopyError> {
    match monoio::time::timeout(timeout, rb.write_to(dst, n)).await {
        Ok(Ok(())) => {
            *moved += n as u64;
            Ok(())
        }
        _ => Err(CopyError::Sink),
    }
}
