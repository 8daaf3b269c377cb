//! Many idle keep-alive client connections, each having made one request, held open
//! while the caller reads the proxy's memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Opens `count` connections to `addr`, makes one request on each (so that a proxy
/// has parsed, routed and answered through it), and returns them open.
pub fn open(addr: SocketAddr, host: &str, count: usize) -> Result<Vec<TcpStream>> {
    let request = format!("GET /100 HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut held = Vec::with_capacity(count);
    let mut buf = vec![0u8; 4096];
    for i in 0..count {
        let mut s = TcpStream::connect(addr).with_context(|| format!("connection {i}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        // The backend's answer to /100 is one small response; read until its body.
        let mut filled = 0;
        loop {
            let n = s.read(&mut buf[filled..])?;
            if n == 0 {
                bail!("connection {i} closed before its response");
            }
            filled += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = r.parse(&buf[..filled]) {
                if r.code != Some(200) {
                    bail!("connection {i}: status {:?}", r.code);
                }
                if filled >= head + crate::backend::DEFAULT_BODY {
                    break;
                }
            }
        }
        held.push(s);
    }
    Ok(held)
}
