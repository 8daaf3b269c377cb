//! Access logs: one JSON line per HTTP exchange. A worker formats its lines into a
//! buffer of its own and hands full buffers (and, every quarter second, any partial
//! one) to a writer thread, so no request waits on the disk and workers share nothing
//! per request. The writer reopens the file on SIGHUP, after logrotate moved it.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use innergate_table::units::Rfc3339;

/// A worker hands its buffer over once it holds this much.
const BATCH_BYTES: usize = 64 * 1024;

/// Batches waiting for the writer; beyond this a worker drops lines (and counts them)
/// rather than grow without bound when the disk is slower than the traffic.
const QUEUED_BATCHES: usize = 256;

/// How often a worker hands over a partial buffer.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// The process side of the access log: the writer thread and its controls.
#[derive(Debug)]
pub struct AccessLog {
    batches: flume::Sender<Vec<u8>>,
    reopen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    writer: Option<thread::JoinHandle<()>>,
}

impl AccessLog {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        let file = open_append(path)?;
        let (batches, received) = flume::bounded(QUEUED_BATCHES);
        let reopen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let flags = Flags {
                reopen: reopen.clone(),
                stop: stop.clone(),
            };
            let path = path.to_path_buf();
            thread::Builder::new()
                .name("ig-access-log".into())
                .spawn(move || write_batches(file, &path, &received, &flags))?
        };
        Ok(AccessLog {
            batches,
            reopen,
            stop,
            writer: Some(writer),
        })
    }

    /// What a worker writes through.
    pub(crate) fn for_worker(&self) -> WorkerLog {
        WorkerLog {
            buffer: RefCell::new(Vec::with_capacity(BATCH_BYTES)),
            batches: self.batches.clone(),
        }
    }

    /// Asks the writer to reopen the file before its next write.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
        // Wakes an idle writer so that the old file is let go of now.
        let _ = self.batches.try_send(Vec::new());
    }
}

impl Drop for AccessLog {
    /// Writes what is queued and stops the writer. Workers hand their last lines over
    /// when they drain, before this runs.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.batches.send(Vec::new());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// What the writer is asked to do besides writing.
struct Flags {
    reopen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_batches(mut file: File, path: &Path, batches: &flume::Receiver<Vec<u8>>, flags: &Flags) {
    while let Ok(batch) = batches.recv() {
        if flags.reopen.swap(false, Ordering::Relaxed) {
            match open_append(path) {
                Ok(reopened) => file = reopened,
                Err(e) => log::error!("cannot reopen the access log {}: {e}", path.display()),
            }
        }
        if let Err(e) = file.write_all(&batch) {
            log::error!("cannot write the access log {}: {e}", path.display());
        }
        if flags.stop.load(Ordering::Relaxed) && batches.is_empty() {
            break;
        }
    }
    let _ = file.flush();
}

/// A worker's side of the access log.
#[derive(Debug)]
pub(crate) struct WorkerLog {
    buffer: RefCell<Vec<u8>>,
    batches: flume::Sender<Vec<u8>>,
}

/// What one line says.
pub(crate) struct Entry<'a> {
    /// The endpoint where the request entered (empty: none served its host).
    pub(crate) endpoint_id: &'a str,
    pub(crate) account: &'a str,
    /// The endpoints forward-internal passed the request through, in order.
    pub(crate) chain: &'a mut dyn Iterator<Item = &'a str>,
    pub(crate) client: &'a str,
    pub(crate) method: &'a [u8],
    pub(crate) host: &'a str,
    pub(crate) path: &'a [u8],
    pub(crate) status: u16,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) duration: Duration,
    /// The innergate-error-code of a failure, if any.
    pub(crate) error: Option<&'a str>,
}

impl WorkerLog {
    /// Formats one line into the worker's buffer; hands the buffer over when full.
    pub(crate) fn record(&self, e: Entry<'_>) {
        let mut out = self.buffer.borrow_mut();
        out.extend_from_slice(b"{\"time\":\"");
        let _ = write!(out, "{}", Rfc3339::millis(SystemTime::now()));
        out.extend_from_slice(b"\",\"endpoint_id\":");
        push_json_str(&mut out, e.endpoint_id.as_bytes());
        out.extend_from_slice(b",\"account\":");
        push_json_str(&mut out, e.account.as_bytes());
        out.extend_from_slice(b",\"forward_internal\":[");
        for (i, id) in e.chain.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(&mut out, id.as_bytes());
        }
        out.extend_from_slice(b"],\"client\":");
        push_json_str(&mut out, e.client.as_bytes());
        out.extend_from_slice(b",\"method\":");
        push_json_str(&mut out, e.method);
        out.extend_from_slice(b",\"host\":");
        push_json_str(&mut out, e.host.as_bytes());
        out.extend_from_slice(b",\"path\":");
        push_json_str(&mut out, e.path);
        let _ = write!(
            out,
            ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3}",
            e.status,
            e.bytes_in,
            e.bytes_out,
            e.duration.as_secs_f64() * 1000.0
        );
        if let Some(code) = e.error {
            out.extend_from_slice(b",\"error_code\":");
            push_json_str(&mut out, code.as_bytes());
        }
        out.extend_from_slice(b"}\n");
        if out.len() >= BATCH_BYTES {
            drop(out);
            self.flush();
        }
    }

    /// Hands whatever the buffer holds to the writer.
    pub(crate) fn flush(&self) {
        let mut buffer = self.buffer.borrow_mut();
        if buffer.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut *buffer, Vec::with_capacity(BATCH_BYTES));
        if let Err(e) = self.batches.try_send(full) {
            let lines = e.into_inner().iter().filter(|&&b| b == b'\n').count();
            log::warn!("access log writer behind: {lines} lines dropped");
        }
    }
}

/// Appends `bytes` as a JSON string: quotes, backslashes and control bytes escaped,
/// bytes that are not UTF-8 replaced.
fn push_json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_they_must() {
        let mut out = Vec::new();
        push_json_str(&mut out, b"a\"b\\c\n\x01\xffd\xc3\xa9");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\u000a\\u0001\u{fffd}d\u{e9}\""
        );
    }
}
