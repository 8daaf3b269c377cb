//! Message body framing (RFC 9112 §6): how long a body is, decided from the head, and
//! a strict streaming decoder for chunked bodies.
//!
//! Anything ambiguous is refused rather than guessed, because a proxy that reads a
//! body boundary differently from its upstream is a request-smuggling hole.

use super::head::{RequestHead, ResponseHead};

/// How a body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Fixed(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

impl BodyLength {
    pub(crate) fn is_empty(self) -> bool {
        matches!(self, BodyLength::Empty | BodyLength::Fixed(0))
    }
}

/// Why a head's framing was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FramingError {
    /// Content-Length repeated, listed, or not a decimal number.
    BadContentLength,
    /// Transfer-Encoding whose final coding is not chunked, or chunked twice.
    BadTransferEncoding,
    /// Both Content-Length and Transfer-Encoding.
    BothLengths,
    /// Transfer-Encoding in an HTTP/1.0 message.
    TransferEncodingInHttp10,
}

fn content_length(headers: &super::head::HeaderBlock) -> Result<Option<u64>, FramingError> {
    let mut values = headers.get_all("content-length");
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || v.is_empty() || v.len() > 18 {
        return Err(FramingError::BadContentLength);
    }
    let mut n = 0u64;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(FramingError::BadContentLength);
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Ok(Some(n))
}

/// Whether Transfer-Encoding is present; `Err` unless its final coding is `chunked` and
/// `chunked` appears once.
fn transfer_encoding(headers: &super::head::HeaderBlock) -> Result<bool, FramingError> {
    let mut present = false;
    let mut last_is_chunked = false;
    let mut chunked_seen = 0;
    for value in headers.get_all("transfer-encoding") {
        present = true;
        for coding in value.split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked_seen += usize::from(last_is_chunked);
        }
    }
    if !present {
        return Ok(false);
    }
    if !last_is_chunked || chunked_seen != 1 {
        return Err(FramingError::BadTransferEncoding);
    }
    Ok(true)
}

/// The framing of a request body.
pub(crate) fn request_body(head: &RequestHead) -> Result<BodyLength, FramingError> {
    let chunked = transfer_encoding(&head.headers)?;
    let length = content_length(&head.headers)?;
    match (chunked, length) {
        (true, Some(_)) => Err(FramingError::BothLengths),
        (true, None) if head.minor_version == 0 => Err(FramingError::TransferEncodingInHttp10),
        (true, None) => Ok(BodyLength::Chunked),
        (false, Some(0) | None) => Ok(BodyLength::Empty),
        (false, Some(n)) => Ok(BodyLength::Fixed(n)),
    }
}

/// The framing of a response body to a request with method HEAD or not.
pub(crate) fn response_body(
    head: &ResponseHead,
    to_head: bool,
) -> Result<BodyLength, FramingError> {
    if to_head || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyLength::Empty);
    }
    let chunked = transfer_encoding(&head.headers);
    let length = content_length(&head.headers)?;
    match (chunked, length) {
        (Ok(true), Some(_)) => Err(FramingError::BothLengths),
        (Ok(true), None) => Ok(BodyLength::Chunked),
        // A response may use another final coding; it then ends at close.
        (Err(FramingError::BadTransferEncoding), _) => Ok(BodyLength::UntilClose),
        (Err(e), _) => Err(e),
        (Ok(false), Some(0)) => Ok(BodyLength::Empty),
        (Ok(false), Some(n)) => Ok(BodyLength::Fixed(n)),
        (Ok(false), None) => Ok(BodyLength::UntilClose),
    }
}

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkError;

/// What the next bytes of a chunked body are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// `n` bytes of payload.
    Data(usize),
    /// `n` bytes of framing (sizes, extensions, CRLFs, trailers), checked.
    Framing(usize),
    /// `n` bytes of framing that end the body.
    End(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        digits: u8,
    },
    /// After the size: extensions up to CR.
    Extension,
    /// After the CR of a size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data: CR then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    TrailerLf,
    /// After the final CR.
    FinalLf,
    Done,
}

/// A streaming, strict chunked-body decoder. It only classifies bytes; the caller
/// decides whether to pass framing on (proxying chunked to chunked) or drop it
/// (decoding for an HTTP/1.0 client).
#[derive(Clone, Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    size: u64,
    /// Bytes of extensions and trailers so far, bounded against memory-less abuse.
    overhead: usize,
}

/// The most extension and trailer bytes a body may carry.
const MAX_OVERHEAD: usize = 64 * 1024;

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            overhead: 0,
        }
    }

    /// Classifies the start of `input` (non-empty), which must follow what earlier
    /// calls consumed.
    pub(crate) fn next(&mut self, input: &[u8]) -> Result<Chunk, ChunkError> {
        debug_assert!(!input.is_empty());
        if self.state == State::Data {
            let n = (self.size.min(input.len() as u64)) as usize;
            self.size -= n as u64;
            if self.size == 0 {
                self.state = State::DataCr;
            }
            return Ok(Chunk::Data(n));
        }
        for (i, &b) in input.iter().enumerate() {
            self.step(b)?;
            match self.state {
                State::Data => return Ok(Chunk::Framing(i + 1)),
                State::Done => return Ok(Chunk::End(i + 1)),
                _ => {}
            }
        }
        Ok(Chunk::Framing(input.len()))
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        let visible = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80;
        self.state = match self.state {
            State::Size { digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if digits < 15 => {
                    self.size =
                        self.size * 16 + u64::from((b as char).to_digit(16).ok_or(ChunkError)?);
                    State::Size { digits: digits + 1 }
                }
                b'\r' if digits > 0 => State::SizeLf,
                b';' | b' ' | b'\t' if digits > 0 => State::Extension,
                _ => return Err(ChunkError),
            },
            State::Extension => match b {
                b'\r' => State::SizeLf,
                b if visible(b) => {
                    self.count_overhead()?;
                    State::Extension
                }
                _ => return Err(ChunkError),
            },
            State::SizeLf => match b {
                b'\n' if self.size == 0 => State::TrailerStart,
                b'\n' => State::Data,
                _ => return Err(ChunkError),
            },
            State::Data => unreachable!("data is handled in next()"),
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError),
            },
            State::DataLf => match b {
                b'\n' => State::Size { digits: 0 },
                _ => return Err(ChunkError),
            },
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                // A field name must start the line: no obs-fold, no bare LF.
                b if is_tchar(b) => {
                    self.count_overhead()?;
                    State::TrailerName
                }
                _ => return Err(ChunkError),
            },
            State::TrailerName => match b {
                b':' => State::TrailerValue,
                b if is_tchar(b) => {
                    self.count_overhead()?;
                    State::TrailerName
                }
                _ => return Err(ChunkError),
            },
            State::TrailerValue => match b {
                b'\r' => State::TrailerLf,
                b if visible(b) => {
                    self.count_overhead()?;
                    State::TrailerValue
                }
                _ => return Err(ChunkError),
            },
            State::TrailerLf => match b {
                b'\n' => State::TrailerStart,
                _ => return Err(ChunkError),
            },
            State::FinalLf => match b {
                b'\n' => State::Done,
                _ => return Err(ChunkError),
            },
            State::Done => return Err(ChunkError),
        };
        // `size` restarts at each size line.
        if self.state == (State::Size { digits: 0 }) {
            self.size = 0;
        }
        Ok(())
    }

    fn count_overhead(&mut self) -> Result<(), ChunkError> {
        self.overhead += 1;
        if self.overhead > MAX_OVERHEAD {
            return Err(ChunkError);
        }
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Decodes a whole chunked body held in memory; for tests and the fuzz target.
/// Returns the payload and how many input bytes the body took; `None` when the body is
/// invalid or incomplete.
#[doc(hidden)]
pub fn decode_chunked(mut input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut decoder = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut used = 0;
    while !input.is_empty() {
        let (n, end) = match decoder.next(input).ok()? {
            Chunk::Data(n) => {
                data.extend_from_slice(&input[..n]);
                (n, false)
            }
            Chunk::Framing(n) => (n, false),
            Chunk::End(n) => (n, true),
        };
        input = &input[n..];
        used += n;
        if end {
            return Some((data, used));
        }
    }
    None
}

/// Parses a request head at the start of `input` and decides its body's framing, as a
/// client connection does; for the fuzz target. `None`: incomplete, malformed or
/// ambiguously framed.
#[doc(hidden)]
pub fn frame_request(input: &[u8]) -> Option<(usize, BodyLength)> {
    let mut head = RequestHead::default();
    let len = head.parse(input).ok()??;
    let mut host = [0u8; 256];
    head.host(&mut host)?;
    Some((len, request_body(&head).ok()?))
}

/// Parses a response head at the start of `input` and decides its body's framing, as
/// an upstream connection does; for the fuzz target.
#[doc(hidden)]
pub fn frame_response(input: &[u8], to_head: bool) -> Option<(usize, BodyLength)> {
    let mut head = ResponseHead::default();
    let len = head.parse(input).ok()??;
    Some((len, response_body(&head, to_head).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_good() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let (data, used) = decode_chunked(body).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(used, body.len() - 4);
        // Byte by byte gives the same answer.
        let mut decoder = ChunkedDecoder::new();
        let mut data = Vec::new();
        for (i, b) in body.iter().enumerate() {
            match decoder.next(std::slice::from_ref(b)).unwrap() {
                Chunk::Data(1) => data.push(*b),
                Chunk::Framing(1) => {}
                Chunk::End(1) => {
                    assert_eq!(i + 1, body.len() - 4);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(data, b"hello world");
        assert_eq!(decode_chunked(b"0\r\n\r\n").unwrap().0, b"");
    }

    #[test]
    fn chunked_bad() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffff\r\n",
            b"5\r\nhello\r\n0\r\n x: folded\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"0\r\nx y: 1\r\n\r\n",
        ] {
            assert!(
                decode_chunked(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn req(raw: &str) -> RequestHead {
        let mut head = RequestHead::default();
        head.parse(raw.as_bytes()).unwrap().unwrap();
        head
    }

    #[test]
    fn request_framing() {
        use BodyLength::*;
        use FramingError::*;
        let f = |h: &str| request_body(&req(&format!("POST / HTTP/1.1\r\n{h}\r\n\r\n")));
        assert_eq!(f("Content-Length: 10"), Ok(Fixed(10)));
        assert_eq!(f("Content-Length: 0"), Ok(Empty));
        assert_eq!(f("X: 1"), Ok(Empty));
        assert_eq!(f("Transfer-Encoding: chunked"), Ok(Chunked));
        assert_eq!(f("Transfer-Encoding: gzip, Chunked"), Ok(Chunked));
        assert_eq!(
            f("Content-Length: 1\r\nContent-Length: 1"),
            Err(BadContentLength)
        );
        assert_eq!(f("Content-Length: 1, 1"), Err(BadContentLength));
        assert_eq!(f("Content-Length: +1"), Err(BadContentLength));
        assert_eq!(
            f("Transfer-Encoding: chunked, gzip"),
            Err(BadTransferEncoding)
        );
        assert_eq!(
            f("Transfer-Encoding: chunked, chunked"),
            Err(BadTransferEncoding)
        );
        assert_eq!(f("Transfer-Encoding: identity"), Err(BadTransferEncoding));
        assert_eq!(
            f("Transfer-Encoding: chunked\r\nContent-Length: 3"),
            Err(BothLengths)
        );
        let old = req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(request_body(&old), Err(TransferEncodingInHttp10));
    }
}
