//! A byte stream through a tcp or tls endpoint: send N bytes, half-close, wait for
//! the sink's count. The count must equal N, or the run is an error.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Sends `bytes` to `addr` (through TLS with server name `sni` when `tls` is set) and
/// returns how long the sink took to count them all.
pub fn send(
    addr: SocketAddr,
    bytes: u64,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
) -> Result<Duration> {
    let tcp = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let answer = match tls {
        None => stream(tcp, bytes, &chunk, |s| s.shutdown(Shutdown::Write))?,
        Some((config, sni)) => {
            let name = rustls::pki_types::ServerName::try_from(sni.to_string())?;
            let conn = rustls::ClientConnection::new(config.clone(), name)?;
            let tls = rustls::StreamOwned::new(conn, tcp);
            stream(tls, bytes, &chunk, |s| {
                s.conn.send_close_notify();
                s.flush()
            })?
        }
    };
    let elapsed = start.elapsed();
    let counted: u64 = answer.trim().parse().unwrap_or(0);
    if counted != bytes {
        bail!("sent {bytes} bytes, the sink counted {counted}");
    }
    Ok(elapsed)
}

fn stream<S: Read + Write>(
    mut s: S,
    bytes: u64,
    chunk: &[u8],
    finish: impl FnOnce(&mut S) -> std::io::Result<()>,
) -> Result<String> {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    finish(&mut s)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // A TLS peer may close without close_notify after its answer.
            Err(e) if !answer.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        if answer.ends_with(b"\n") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
