//! The control link's wire format: length-prefixed, versioned messages.
//!
//! A frame is a big-endian `u32` length and that many payload bytes. A payload starts
//! with the protocol version ([`WIRE_VERSION`]) and a message kind, then the message's
//! fields: integers big-endian, strings and lists prefixed by a `u32` count. A reader
//! rejects unknown versions and kinds, short input and trailing bytes.

use std::io::{self, Read, Write};

pub use crate::codec::InvalidMessage;
use crate::codec::{put_str, put_u32, Reader};
use crate::endpoint::EndpointRecord;
use crate::tunnel_calls::{TunnelAnswer, TunnelCall};
use crate::tunnel_sessions::{SessionCommand, SessionRecord};

pub use crate::codec::WIRE_VERSION;

/// The oldest version whose tables are still read.
const OLDEST_READ: u8 = 1;

/// The largest frame either side accepts (a 100,000-endpoint table is ≈ 30 MiB).
pub const MAX_FRAME: usize = 512 << 20;

/// A table as control sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableMessage {
    /// The table's version.
    pub version: u64,
    /// Every endpoint.
    pub endpoints: Vec<EndpointRecord>,
    /// Every live authtoken, by hash: what tunnel sessions authenticate with.
    pub authtokens: Vec<AuthtokenRecord>,
}

/// An authtoken as the data plane knows it: never the secret, only its SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthtokenRecord {
    /// `at_…`.
    pub id: String,
    /// The account it belongs to.
    pub account: String,
    /// The SHA-256 of the token, lowercase hex.
    pub sha256: String,
}

/// A public listener the data plane holds: which URL port it serves, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The port in endpoint URLs.
    pub url_port: u16,
    /// The local address it is bound to.
    pub local_addr: String,
}

/// The data plane's state after a table was applied or asked about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// The version of the table being served (0: none).
    pub version: u64,
    /// The public listeners it holds.
    pub listeners: Vec<ListenerInfo>,
    /// Where its tunnel listener is bound; empty without one.
    pub tunnel_addr: String,
}

/// A message on the control link.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// control → data plane: serve this table.
    ApplyTable(TableMessage),
    /// data plane → control: the table was applied.
    Applied(Ack),
    /// data plane → control: the table was refused; the previous one is still served.
    Refused {
        /// The version refused.
        version: u64,
        /// Why, in words for a person.
        reason: String,
    },
    /// control → data plane: which table do you serve?
    StatusRequest,
    /// data plane → control: the table being served.
    Status(Ack),
    /// control → data plane: this connection now carries the data plane's tunnel
    /// calls (and control's answers) instead of control's requests.
    Subscribe,
    /// data plane → control: a tunnel session asks for something (answered by id).
    TunnelCall {
        /// Chosen by the data plane; the answer carries it back.
        id: u64,
        /// What is asked.
        call: TunnelCall,
    },
    /// control → data plane: the answer to a tunnel call.
    TunnelAnswer {
        /// The call's id.
        id: u64,
        /// The answer.
        answer: TunnelAnswer,
    },
    /// control → data plane: which tunnel sessions are there?
    SessionsRequest,
    /// data plane → control: every authenticated tunnel session.
    Sessions(Vec<SessionRecord>),
    /// control → data plane: send this command to a session's agent.
    SessionCommand {
        /// The session's id.
        session: String,
        /// What to tell the agent.
        command: SessionCommand,
    },
    /// data plane → control: what the agent answered; an empty `error` is success.
    CommandResult {
        /// The agent's error, or why the command could not be delivered.
        error: String,
    },
}

const KIND_APPLY: u8 = 1;
const KIND_APPLIED: u8 = 2;
const KIND_REFUSED: u8 = 3;
const KIND_STATUS_REQUEST: u8 = 4;
const KIND_STATUS: u8 = 5;
const KIND_SUBSCRIBE: u8 = 6;
const KIND_TUNNEL_CALL: u8 = 7;
const KIND_TUNNEL_ANSWER: u8 = 8;
const KIND_SESSIONS_REQUEST: u8 = 9;
const KIND_SESSIONS: u8 = 10;
const KIND_SESSION_COMMAND: u8 = 11;
const KIND_COMMAND_RESULT: u8 = 12;

impl Message {
    /// Appends the payload (without the frame length) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(WIRE_VERSION);
        match self {
            Message::ApplyTable(t) => {
                out.push(KIND_APPLY);
                out.extend_from_slice(&t.version.to_be_bytes());
                put_u32(out, t.endpoints.len() as u32);
                for e in &t.endpoints {
                    put_str(out, &e.id);
                    put_str(out, &e.account);
                    put_str(out, &e.url);
                    put_str(out, &e.binding);
                    put_str(out, &e.upstream);
                    out.push(e.pooling_enabled as u8);
                    put_str(out, &e.traffic_policy);
                    out.extend_from_slice(&e.max_request_body.to_be_bytes());
                    out.push(e.tunnel as u8);
                }
                put_u32(out, t.authtokens.len() as u32);
                for a in &t.authtokens {
                    put_str(out, &a.id);
                    put_str(out, &a.account);
                    put_str(out, &a.sha256);
                }
            }
            Message::Applied(ack) | Message::Status(ack) => {
                out.push(if matches!(self, Message::Applied(_)) {
                    KIND_APPLIED
                } else {
                    KIND_STATUS
                });
                out.extend_from_slice(&ack.version.to_be_bytes());
                put_u32(out, ack.listeners.len() as u32);
                for l in &ack.listeners {
                    out.extend_from_slice(&l.url_port.to_be_bytes());
                    put_str(out, &l.local_addr);
                }
                put_str(out, &ack.tunnel_addr);
            }
            Message::Refused { version, reason } => {
                out.push(KIND_REFUSED);
                out.extend_from_slice(&version.to_be_bytes());
                put_str(out, reason);
            }
            Message::StatusRequest => out.push(KIND_STATUS_REQUEST),
            Message::Subscribe => out.push(KIND_SUBSCRIBE),
            Message::TunnelCall { id, call } => {
                out.push(KIND_TUNNEL_CALL);
                out.extend_from_slice(&id.to_be_bytes());
                call.encode(out);
            }
            Message::TunnelAnswer { id, answer } => {
                out.push(KIND_TUNNEL_ANSWER);
                out.extend_from_slice(&id.to_be_bytes());
                answer.encode(out);
            }
            Message::SessionsRequest => out.push(KIND_SESSIONS_REQUEST),
            Message::Sessions(list) => {
                out.push(KIND_SESSIONS);
                put_u32(out, list.len() as u32);
                for s in list {
                    s.encode(out);
                }
            }
            Message::SessionCommand { session, command } => {
                out.push(KIND_SESSION_COMMAND);
                put_str(out, session);
                command.encode(out);
            }
            Message::CommandResult { error } => {
                out.push(KIND_COMMAND_RESULT);
                put_str(out, error);
            }
        }
    }

    /// Decodes one payload, refusing anything left over.
    pub fn read(payload: &[u8]) -> Result<Message, InvalidMessage> {
        let mut r = Reader::new(payload);
        let wire = r.u8()?;
        if !(OLDEST_READ..=WIRE_VERSION).contains(&wire) {
            return Err(InvalidMessage::UnsupportedVersion(wire));
        }
        let kind = r.u8()?;
        if wire != WIRE_VERSION && kind != KIND_APPLY {
            return Err(InvalidMessage::UnsupportedVersion(wire));
        }
        let msg = match kind {
            KIND_APPLY => {
                let version = r.u64()?;
                // Six length prefixes and a bool (and, from version 2, a u64; from
                // version 3, another bool): 25, 33 or 34 bytes at least per endpoint.
                let n = r.count(match wire {
                    1 => 25,
                    2 => 33,
                    _ => 34,
                })?;
                let mut endpoints = Vec::with_capacity(n);
                for _ in 0..n {
                    endpoints.push(EndpointRecord {
                        id: r.string()?,
                        account: r.string()?,
                        url: r.string()?,
                        binding: r.string()?,
                        upstream: r.string()?,
                        pooling_enabled: r.bool()?,
                        traffic_policy: r.string()?,
                        max_request_body: if wire >= 2 { r.u64()? } else { 0 },
                        tunnel: wire >= 3 && r.bool()?,
                    });
                }
                let mut authtokens = Vec::new();
                if wire >= 3 {
                    let n = r.count(12)?;
                    authtokens.reserve(n);
                    for _ in 0..n {
                        authtokens.push(AuthtokenRecord {
                            id: r.string()?,
                            account: r.string()?,
                            sha256: r.string()?,
                        });
                    }
                }
                Message::ApplyTable(TableMessage {
                    version,
                    endpoints,
                    authtokens,
                })
            }
            kind @ (KIND_APPLIED | KIND_STATUS) => {
                let version = r.u64()?;
                let n = r.count(6)?;
                let mut listeners = Vec::with_capacity(n);
                for _ in 0..n {
                    listeners.push(ListenerInfo {
                        url_port: r.u16()?,
                        local_addr: r.string()?,
                    });
                }
                let ack = Ack {
                    version,
                    listeners,
                    tunnel_addr: r.string()?,
                };
                if kind == KIND_APPLIED {
                    Message::Applied(ack)
                } else {
                    Message::Status(ack)
                }
            }
            KIND_REFUSED => Message::Refused {
                version: r.u64()?,
                reason: r.string()?,
            },
            KIND_STATUS_REQUEST => Message::StatusRequest,
            KIND_SUBSCRIBE => Message::Subscribe,
            KIND_TUNNEL_CALL => Message::TunnelCall {
                id: r.u64()?,
                call: TunnelCall::read(&mut r)?,
            },
            KIND_TUNNEL_ANSWER => Message::TunnelAnswer {
                id: r.u64()?,
                answer: TunnelAnswer::read(&mut r)?,
            },
            KIND_SESSIONS_REQUEST => Message::SessionsRequest,
            KIND_SESSIONS => {
                let n = r.count(SessionRecord::MIN_LEN)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(SessionRecord::read(&mut r)?);
                }
                Message::Sessions(list)
            }
            KIND_SESSION_COMMAND => Message::SessionCommand {
                session: r.string()?,
                command: SessionCommand::read(&mut r)?,
            },
            KIND_COMMAND_RESULT => Message::CommandResult { error: r.string()? },
            kind => return Err(InvalidMessage::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Writes one frame: length, then payload.
pub fn write_frame(w: &mut impl Write, msg: &Message) -> io::Result<()> {
    let mut buf = vec![0u8; 4];
    msg.encode(&mut buf);
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame's payload; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// Decodes a payload as a table message; used by the fuzz target and the state cache.
#[doc(hidden)]
pub fn decode_table(payload: &[u8]) -> Result<TableMessage, InvalidMessage> {
    match Message::read(payload)? {
        Message::ApplyTable(t) => Ok(t),
        _ => Err(InvalidMessage::UnknownKind(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(msg: Message) {
        let mut buf = Vec::new();
        msg.encode(&mut buf);
        assert_eq!(Message::read(&buf).unwrap(), msg);
        for cut in 0..buf.len() {
            assert!(Message::read(&buf[..cut]).is_err(), "prefix {cut} decoded");
        }
        buf.push(0);
        assert_eq!(Message::read(&buf), Err(InvalidMessage::TrailingBytes(1)));
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(Message::ApplyTable(TableMessage {
            version: 7,
            endpoints: vec![EndpointRecord {
                id: "ep_1".into(),
                account: "a".into(),
                url: "http://x.example.com".into(),
                binding: "public".into(),
                upstream: "8080".into(),
                pooling_enabled: true,
                traffic_policy: "on_http_request: []".into(),
                max_request_body: 1 << 20,
                tunnel: true,
            }],
            authtokens: vec![AuthtokenRecord {
                id: "at_1".into(),
                account: "a".into(),
                sha256: "ab".repeat(32),
            }],
        }));
        let ack = Ack {
            version: 3,
            listeners: vec![ListenerInfo {
                url_port: 80,
                local_addr: "127.0.0.1:4000".into(),
            }],
            tunnel_addr: "127.0.0.1:4443".into(),
        };
        roundtrip(Message::Applied(ack.clone()));
        roundtrip(Message::Status(ack));
        roundtrip(Message::Refused {
            version: 2,
            reason: "no".into(),
        });
        roundtrip(Message::StatusRequest);
        roundtrip(Message::Subscribe);
        for call in crate::tunnel_calls::examples() {
            roundtrip(Message::TunnelCall { id: 9, call });
        }
        for answer in crate::tunnel_calls::answer_examples() {
            roundtrip(Message::TunnelAnswer { id: 9, answer });
        }
        roundtrip(Message::SessionsRequest);
        roundtrip(Message::Sessions(vec![]));
        roundtrip(Message::Sessions(vec![SessionRecord {
            id: "ses_1_w0_of2".into(),
            account: "acc_1".into(),
            authtoken_id: "at_1".into(),
            remote_addr: "10.0.0.2:5000".into(),
            client_type: "ngrok-python".into(),
            client_version: "1.7.0".into(),
            os: "linux".into(),
            hostname: "laptop".into(),
            metadata: "m".into(),
            started_at: 1_780_000_000,
            endpoint_ids: vec!["ep_1".into(), "ep_2".into()],
        }]));
        for command in crate::tunnel_sessions::command_examples() {
            roundtrip(Message::SessionCommand {
                session: "ses_1_w0_of2".into(),
                command,
            });
        }
        roundtrip(Message::CommandResult {
            error: String::new(),
        });
        roundtrip(Message::CommandResult {
            error: "not supported".into(),
        });
    }

    #[test]
    fn refuses_other_versions_and_forged_counts() {
        assert_eq!(
            Message::read(&[9, KIND_STATUS_REQUEST]),
            Err(InvalidMessage::UnsupportedVersion(9))
        );
        assert_eq!(
            Message::read(&[WIRE_VERSION, 99]),
            Err(InvalidMessage::UnknownKind(99))
        );
        // Version 1 is read for tables only (a state cache from before an upgrade).
        assert_eq!(
            Message::read(&[1, KIND_STATUS_REQUEST]),
            Err(InvalidMessage::UnsupportedVersion(1))
        );
        let mut forged = vec![WIRE_VERSION, KIND_APPLY];
        forged.extend_from_slice(&1u64.to_be_bytes());
        forged.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Message::read(&forged), Err(InvalidMessage::Truncated));
    }

    #[test]
    fn version_1_tables_are_still_read() {
        let mut v1 = vec![1, KIND_APPLY];
        v1.extend_from_slice(&5u64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        for field in ["ep_1", "a", "http://x.example.com", "public", ""] {
            put_str(&mut v1, field);
        }
        v1.push(0);
        put_str(&mut v1, "");
        let table = decode_table(&v1).unwrap();
        assert_eq!(table.version, 5);
        assert_eq!(table.endpoints[0].url, "http://x.example.com");
        assert_eq!(table.endpoints[0].max_request_body, 0);
    }
}
