//! The backend every system in a comparison forwards to, run inside the bench process
//! on the load CPUs:
//!
//! - an HTTP/1.1 server on monoio (io_uring, keep-alive, pipelining) answering
//!   `GET /N` with an N-byte body (100 bytes for any other path);
//! - a byte sink: reads a stream to its end, then answers the count as a text line;
//! - the same sink behind TLS (rustls), for tls passthrough.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::host::CpuSet;

/// Body size for paths that name none.
pub const DEFAULT_BODY: usize = 100;

/// The running backend's addresses. Its threads live as long as the process.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The HTTP server.
    pub http: SocketAddr,
    /// The plain byte sink.
    pub sink: SocketAddr,
    /// The TLS byte sink.
    pub tls_sink: SocketAddr,
}

impl Backend {
    /// Starts `threads` HTTP runtimes and the two sinks, pinned to `cpus`.
    pub fn start(
        threads: usize,
        cpus: Option<&CpuSet>,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Backend> {
        let http = TcpListener::bind("127.0.0.1:0")?;
        let http_addr = http.local_addr()?;
        for i in 0..threads.max(1) {
            let listener = http.try_clone()?;
            let cpus = cpus.cloned();
            std::thread::Builder::new()
                .name(format!("backend-{i}"))
                .spawn(move || {
                    if let Some(cpus) = cpus {
                        let _ = cpus.pin_current_thread();
                    }
                    run_http(listener)
                })?;
        }
        let sink = TcpListener::bind("127.0.0.1:0")?;
        let tls_sink = TcpListener::bind("127.0.0.1:0")?;
        let backend = Backend {
            http: http_addr,
            sink: sink.local_addr()?,
            tls_sink: tls_sink.local_addr()?,
        };
        spawn_sink(sink, None, cpus.cloned())?;
        spawn_sink(tls_sink, Some(tls), cpus.cloned())?;
        Ok(backend)
    }
}

// === HTTP ===

fn run_http(listener: TcpListener) {
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build();
    let Ok(mut runtime) = runtime else {
        eprintln!("backend: no runtime");
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = monoio::net::TcpListener::from_std(listener) else {
            eprintln!("backend: listener refused by the runtime");
            return;
        };
        let bodies = Rc::new(std::cell::RefCell::new(Responses::default()));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            monoio::spawn(serve_http(stream, bodies.clone()));
        }
    });
}

/// Whole responses by body size, built once.
#[derive(Default)]
struct Responses(HashMap<usize, Rc<[u8]>>);

impl Responses {
    fn get(&mut self, size: usize) -> Rc<[u8]> {
        self.0
            .entry(size)
            .or_insert_with(|| {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
                )
                .into_bytes();
                r.resize(r.len() + size, b'x');
                r.into()
            })
            .clone()
    }
}

/// What one request asks of the backend.
#[derive(Debug, PartialEq, Eq)]
struct Ask {
    head_len: usize,
    body_len: usize,
    body_size: usize,
    close: bool,
}

/// Parses the request at the start of `bytes`; `Ok(None)` while it is incomplete.
fn parse_request(bytes: &[u8]) -> Result<Option<Ask>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let body_size = req
        .path
        .and_then(|p| p.trim_start_matches('/').split('?').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_BODY);
    let mut body_len = 0;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(())?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(()); // the bench never sends chunked requests
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some(Ask {
        head_len,
        body_len,
        body_size,
        close,
    }))
}

async fn serve_http(
    mut stream: monoio::net::TcpStream,
    responses: Rc<std::cell::RefCell<Responses>>,
) {
    let mut data: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut skip = 0usize; // body bytes of the last request still to arrive
    loop {
        if data.len() == data.capacity() {
            data.reserve(data.capacity());
        }
        let (len, cap) = (data.len(), data.capacity());
        let (res, slice) = stream.read(data.slice_mut(len..cap)).await;
        data = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut at = 0;
        let mut close = false;
        loop {
            let dropped = skip.min(data.len() - at);
            at += dropped;
            skip -= dropped;
            if skip > 0 || at == data.len() {
                break;
            }
            match parse_request(&data[at..]) {
                Ok(Some(ask)) => {
                    out.extend_from_slice(&responses.borrow_mut().get(ask.body_size));
                    at += ask.head_len;
                    skip = ask.body_len;
                    if ask.close {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(()) => {
                    out.extend_from_slice(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    close = true;
                    break;
                }
            }
        }
        data.drain(..at);
        if !out.is_empty() {
            let (res, buf) = stream.write_all(std::mem::take(&mut out)).await;
            out = buf;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

// === sinks ===

fn spawn_sink(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    cpus: Option<CpuSet>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            if let Some(cpus) = &cpus {
                let _ = cpus.pin_current_thread();
            }
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let tls = tls.clone();
                let cpus = cpus.clone();
                std::thread::spawn(move || {
                    if let Some(cpus) = cpus {
                        let _ = cpus.pin_current_thread();
                    }
                    let _ = match tls {
                        None => count_to_end(stream),
                        Some(config) => rustls::ServerConnection::new(config)
                            .map_err(std::io::Error::other)
                            .and_then(|conn| count_to_end(rustls::StreamOwned::new(conn, stream))),
                    };
                });
            }
        })
        .context("start the sink")?;
    Ok(())
}

/// Reads to the end of the stream, then writes the count and a newline.
fn count_to_end(mut stream: impl Read + Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    stream.write_all(format!("{total}\n").as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_their_body_size() {
        let ask = parse_request(b"GET /4096 HTTP/1.1\r\nHost: a\r\n\r\nGET").unwrap();
        assert_eq!(
            ask,
            Some(Ask {
                head_len: 31,
                body_len: 0,
                body_size: 4096,
                close: false
            })
        );
        let ask =
            parse_request(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (ask.body_size, ask.body_len, ask.close),
            (DEFAULT_BODY, 5, true)
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n").unwrap(), None);
        assert!(parse_request(b"\x01\x02 nonsense\r\n\r\n").is_err());
    }
}
