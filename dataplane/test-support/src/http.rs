//! A small blocking HTTP/1.1 client that reads exactly what the server sent: one
//! connection carries several requests, and nothing is retried or normalised, so
//! tests can assert on framing, keep-alive and closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::process::TIMEOUT;

// === impl Response ===

/// A response as the client received it.
#[derive(Debug)]
pub struct Response {
    /// The status code of the status line.
    pub status: u16,
    /// Header fields in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, unchunked.
    pub body: Vec<u8>,
}

impl Response {
    /// Reads one response (not to a HEAD request) from `reader`: `None` on EOF, an
    /// I/O error or anything that is not a response.
    pub fn read_from(reader: &mut impl BufRead) -> Option<Response> {
        let head = read_head(reader)?;
        let mut lines = head.lines();
        let status_line = lines.next()?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Some(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            response.body = read_chunked(reader)?;
        } else if let Some(n) = response.header("content-length") {
            let mut body = vec![0; n.parse().ok()?];
            reader.read_exact(&mut body).ok()?;
            response.body = body;
        } else {
            reader.read_to_end(&mut response.body).ok()?;
        }
        Some(response)
    }

    /// The first header field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `innergate-error-code` the data plane tags its own errors with.
    pub fn error_code(&self) -> Option<&str> {
        self.header("innergate-error-code")
    }
}

// === impl HttpConn ===

/// A client connection that can carry several requests.
#[derive(Debug)]
pub struct HttpConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl HttpConn {
    /// Connects to `addr`; reads time out after [`TIMEOUT`].
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Self {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        HttpConn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Writes `bytes` as they are.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Sends a request with `Host: host` and an optional Content-Length body.
    #[track_caller]
    pub fn request(&mut self, method: &str, host: &str, path: &str, body: &[u8]) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes());
        self.send(body);
        self.read_response()
    }

    /// A GET of `path` with `Host: host`.
    #[track_caller]
    pub fn get(&mut self, host: &str, path: &str) -> Response {
        self.request("GET", host, path, b"")
    }

    /// Reads one response (not to a HEAD request).
    #[track_caller]
    pub fn read_response(&mut self) -> Response {
        self.try_read_response().expect("a response")
    }

    /// Reads one response (not to a HEAD request); `None` when the connection ended
    /// or failed before a whole one arrived.
    pub fn try_read_response(&mut self) -> Option<Response> {
        Response::read_from(&mut self.reader)
    }

    /// The connection as raw bytes, after a protocol switch.
    pub fn into_stream(self) -> BufReader<TcpStream> {
        self.reader
    }

    /// Whether the server closed the connection: EOF or reset within 5 s. Bytes or
    /// silence mean it is still open.
    pub fn is_closed(&mut self) -> bool {
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(TIMEOUT))
            .unwrap();
        closed
    }
}

/// One GET on a fresh connection.
#[track_caller]
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    HttpConn::connect(addr).get(host, path)
}

/// Sends raw bytes on a fresh connection and reads one response.
#[track_caller]
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> (Response, HttpConn) {
    let mut conn = HttpConn::connect(addr);
    conn.send(bytes);
    let response = conn.read_response();
    (response, conn)
}

// === framing ===

/// Reads a message head up to its empty line; the lines without it. `None` on EOF
/// or an error first.
pub fn read_head(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
}

/// Reads a chunked body through its last chunk and trailers; the data. `None` on
/// EOF, an error or a malformed chunk size first.
pub fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t).ok()? == 0 || t == "\r\n" {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}
