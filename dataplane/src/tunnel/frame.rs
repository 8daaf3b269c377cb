//! muxado frames: the framing layer of the agent protocol's stream multiplexing.
//!
//! Every frame is an 8-byte header — a `u32` holding the body length (24 bits), the
//! type (4 bits) and flags (4 bits), then a `u32` stream id whose top bit is reserved
//! — and a body. Types: RST (a stream's error code), DATA (bytes; SYN opens a stream,
//! FIN half-closes it), WNDINC (the receiver freed window), GOAWAY (the session ends).
//! Integers are big-endian. Agents open odd stream ids, the server even ones.

/// A frame header's size.
pub(crate) const HEADER_LEN: usize = 8;
/// The largest body a header can describe.
pub(crate) const MAX_BODY: usize = 0x00FF_FFFF;

pub(crate) const FLAG_FIN: u8 = 0x1;
pub(crate) const FLAG_SYN: u8 = 0x2;

const TYPE_RST: u8 = 0;
const TYPE_DATA: u8 = 1;
const TYPE_WNDINC: u8 = 2;
const TYPE_GOAWAY: u8 = 3;

const ID_MASK: u32 = 0x7FFF_FFFF;

/// muxado error codes (the ones this side sends or tells apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum ErrorCode {
    None = 0x00,
    Protocol = 0x01,
    FlowControl = 0x03,
    StreamClosed = 0x04,
    StreamCancelled = 0x06,
    StreamsExhausted = 0x0C,
}

/// A decoded frame, borrowing its body from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Rst {
        stream: u32,
        code: u32,
    },
    Data {
        stream: u32,
        flags: u8,
        body: &'a [u8],
    },
    WndInc {
        stream: u32,
        increment: u32,
    },
    GoAway {
        last_stream: u32,
        code: u32,
        message: &'a [u8],
    },
}

/// Why bytes are not a frame: the session ends with a protocol error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    UnknownType(u8),
    /// A header whose length or stream id does not fit its type.
    Malformed(&'static str),
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when more bytes are needed,
/// else the frame and how many bytes it took.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let word = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = (word >> 8) as usize;
    let typ = ((word >> 4) & 0xF) as u8;
    let flags = (word & 0xF) as u8;
    let stream = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) & ID_MASK;
    // Reject before waiting for a body that a valid frame of this type cannot have.
    match typ {
        TYPE_RST | TYPE_WNDINC if len != 4 => return Err(FrameError::Malformed("length is not 4")),
        TYPE_GOAWAY if len < 8 => return Err(FrameError::Malformed("GOAWAY shorter than 8")),
        TYPE_RST | TYPE_DATA | TYPE_WNDINC if stream == 0 => {
            return Err(FrameError::Malformed("stream id 0"))
        }
        TYPE_GOAWAY if stream != 0 => return Err(FrameError::Malformed("GOAWAY on a stream")),
        TYPE_RST | TYPE_DATA | TYPE_WNDINC | TYPE_GOAWAY => {}
        other => return Err(FrameError::UnknownType(other)),
    }
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let word_at = |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let frame = match typ {
        TYPE_RST => Frame::Rst {
            stream,
            code: word_at(0),
        },
        TYPE_DATA => Frame::Data {
            stream,
            flags,
            body,
        },
        TYPE_WNDINC => Frame::WndInc {
            stream,
            increment: word_at(0) & ID_MASK,
        },
        _ => Frame::GoAway {
            last_stream: word_at(0) & ID_MASK,
            code: word_at(4),
            message: &body[8..],
        },
    };
    Ok(Some((frame, HEADER_LEN + len)))
}

fn header(out: &mut Vec<u8>, typ: u8, flags: u8, stream: u32, len: usize) {
    debug_assert!(len <= MAX_BODY);
    let word = ((len as u32) << 8) | (u32::from(typ) << 4) | u32::from(flags & 0xF);
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(&(stream & ID_MASK).to_be_bytes());
}

/// Appends a DATA frame carrying `body` (at most [`MAX_BODY`] bytes).
pub(crate) fn put_data(out: &mut Vec<u8>, stream: u32, flags: u8, body: &[u8]) {
    header(out, TYPE_DATA, flags, stream, body.len());
    out.extend_from_slice(body);
}

pub(crate) fn put_wndinc(out: &mut Vec<u8>, stream: u32, increment: u32) {
    header(out, TYPE_WNDINC, 0, stream, 4);
    out.extend_from_slice(&(increment & ID_MASK).to_be_bytes());
}

pub(crate) fn put_rst(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    header(out, TYPE_RST, 0, stream, 4);
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

pub(crate) fn put_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode, message: &str) {
    let message = &message.as_bytes()[..message.len().min(MAX_BODY - 8)];
    header(out, TYPE_GOAWAY, 0, 0, 8 + message.len());
    out.extend_from_slice(&(last_stream & ID_MASK).to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_with_flags() {
        let mut out = Vec::new();
        put_data(&mut out, 3, FLAG_SYN | FLAG_FIN, b"hello");
        // The header as the reference implementation lays it out: length 5, type 1,
        // flags SYN|FIN, stream 3.
        assert_eq!(&out[..8], &[0, 0, 5, 0x13, 0, 0, 0, 3]);
        let (frame, used) = decode(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            frame,
            Frame::Data {
                stream: 3,
                flags: FLAG_SYN | FLAG_FIN,
                body: b"hello"
            }
        );
    }

    #[test]
    fn partial_input_asks_for_more() {
        let mut out = Vec::new();
        put_data(&mut out, 5, 0, b"abcdef");
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn control_frames_round_trip() {
        let mut out = Vec::new();
        put_wndinc(&mut out, 7, 65536);
        put_rst(&mut out, 9, ErrorCode::FlowControl);
        put_goaway(&mut out, 11, ErrorCode::Protocol, "bye");
        let (f1, n1) = decode(&out).unwrap().unwrap();
        assert_eq!(
            f1,
            Frame::WndInc {
                stream: 7,
                increment: 65536
            }
        );
        let (f2, n2) = decode(&out[n1..]).unwrap().unwrap();
        assert_eq!(f2, Frame::Rst { stream: 9, code: 3 });
        let (f3, n3) = decode(&out[n1 + n2..]).unwrap().unwrap();
        assert_eq!(
            f3,
            Frame::GoAway {
                last_stream: 11,
                code: 1,
                message: b"bye"
            }
        );
        assert_eq!(n1 + n2 + n3, out.len());
    }

    #[test]
    fn malformed_headers_are_refused_before_their_body() {
        // type 7 does not exist
        assert_eq!(
            decode(&[0, 0, 0, 0x70, 0, 0, 0, 1]),
            Err(FrameError::UnknownType(7))
        );
        // DATA on stream 0
        assert!(matches!(
            decode(&[0, 0, 1, 0x10, 0, 0, 0, 0]),
            Err(FrameError::Malformed(_))
        ));
        // WNDINC of length 3, refused without waiting for 3 bytes
        assert!(matches!(
            decode(&[0, 0, 3, 0x20, 0, 0, 0, 1]),
            Err(FrameError::Malformed(_))
        ));
        // GOAWAY naming a stream
        assert!(matches!(
            decode(&[0, 0, 8, 0x30, 0, 0, 0, 1]),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn the_reserved_stream_bit_is_ignored() {
        let frame = [0, 0, 0, 0x10, 0x80, 0, 0, 1];
        let (f, _) = decode(&frame).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Data {
                stream: 1,
                flags: 0,
                body: b""
            }
        );
    }
}
