//! The control link's encoding primitives: a cursor over received bytes that refuses
//! short input and forged counts, and the writers of integers and strings. Integers
//! are big-endian; strings and lists are prefixed by a `u32` count.

/// The version of this wire format. A peer speaking another version is refused, except
/// that version 1 tables (from a state cache written before an upgrade) are still read.
/// Version 2 added each endpoint's `max_request_body`; version 3 each endpoint's
/// `tunnel` flag, the table's authtokens and the tunnel calls.
pub const WIRE_VERSION: u8 = 3;

/// Why bytes did not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// The payload ended early.
    #[error("message truncated")]
    Truncated,
    /// Bytes were left after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// Another wire version.
    #[error("unsupported wire version {0} (this side speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// An unknown message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A string that is not UTF-8.
    #[error("a string is not valid UTF-8")]
    InvalidUtf8,
    /// A boolean other than 0 or 1.
    #[error("invalid boolean {0}")]
    InvalidBool(u8),
}

/// A cursor over received bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], InvalidMessage> {
        if self.buf.len() < n {
            return Err(InvalidMessage::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, InvalidMessage> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, InvalidMessage> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, InvalidMessage> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, InvalidMessage> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, InvalidMessage> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(InvalidMessage::InvalidBool(b)),
        }
    }

    pub(crate) fn string(&mut self) -> Result<String, InvalidMessage> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| InvalidMessage::InvalidUtf8)
    }

    /// A count of items that each need at least `min_item` bytes, checked against what
    /// is left so a forged count cannot make us allocate.
    pub(crate) fn count(&mut self, min_item: usize) -> Result<usize, InvalidMessage> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(InvalidMessage::Truncated);
        }
        Ok(n)
    }

    pub(crate) fn finish(self) -> Result<(), InvalidMessage> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(InvalidMessage::TrailingBytes(n)),
        }
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}
