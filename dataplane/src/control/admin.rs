//! The admin listener (`--admin ADDR`): `/healthz` (200 once a table is applied) and
//! `/metrics` (Prometheus text). A small blocking server on its own thread, off the
//! request path.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::supervisor::Supervisor;

/// Serves the admin endpoints until the process ends.
pub(crate) fn spawn(
    listener: TcpListener,
    supervisor: Arc<Mutex<Supervisor>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ig-admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = serve(stream, &supervisor);
            }
        })?;
    Ok(())
}

fn serve(mut stream: std::net::TcpStream, supervisor: &Mutex<Supervisor>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let path = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => break req.path.unwrap_or("/").to_string(),
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n"),
        }
    };
    let supervisor = supervisor.lock().unwrap_or_else(|e| e.into_inner());
    match path.as_str() {
        "/healthz" if supervisor.has_table() => respond(&mut stream, 200, "text/plain", "ok\n"),
        "/healthz" => respond(&mut stream, 503, "text/plain", "no table applied yet\n"),
        "/metrics" => {
            let body = supervisor.metrics();
            respond(&mut stream, 200, "text/plain; version=0.0.4", &body)
        }
        _ => respond(&mut stream, 404, "text/plain", "try /healthz or /metrics\n"),
    }
}

fn respond(
    stream: &mut std::net::TcpStream,
    status: u16,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = crate::http::head::canonical_reason(status);
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
