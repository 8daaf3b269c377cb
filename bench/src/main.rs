//! innergate benchmark tools. The full harness of BENCH.md is issue #6; for now:
//!
//!     innergate-bench tcp-sink ADDR            count bytes until EOF, answer the count
//!     innergate-bench tcp-send ADDR BYTES      send BYTES, print the throughput
//!
//! `scripts/bench-tcp.sh` runs them directly and through innergate in one go.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHUNK: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["tcp-sink", addr] => sink(addr),
        ["tcp-send", addr, bytes] => match bytes.parse() {
            Ok(n) => send(addr, n),
            Err(_) => usage(),
        },
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> i32 {
    eprintln!("usage: innergate-bench tcp-sink ADDR | tcp-send ADDR BYTES");
    2
}

/// Accepts connections one after another; reads each to EOF, then writes the count.
fn sink(addr: &str) -> i32 {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcp-sink: {addr}: {e}");
            return 1;
        }
    };
    let mut buf = vec![0u8; CHUNK];
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let _ = s.write_all(format!("{total}\n").as_bytes());
    }
    0
}

/// Sends `bytes`, half-closes, waits for the sink's count; prints GB/s.
fn send(addr: &str, bytes: u64) -> i32 {
    let mut s = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcp-send: {addr}: {e}");
            return 1;
        }
    };
    let chunk = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        if let Err(e) = s.write_all(&chunk[..n]) {
            eprintln!("tcp-send: {e}");
            return 1;
        }
        left -= n as u64;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let secs = start.elapsed().as_secs_f64();
    let received: u64 = answer.trim().parse().unwrap_or(0);
    if received != bytes {
        eprintln!("tcp-send: sent {bytes} bytes, the sink counted {received}");
        return 1;
    }
    println!(
        "{:.2} GB/s ({bytes} bytes in {secs:.3} s)",
        bytes as f64 / secs / 1e9
    );
    0
}
