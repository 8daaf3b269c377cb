//! Child processes that cannot outlive their test, and waiting on conditions.
//!
//! Tests wait on what they need (a log line, a closed socket, a counter), never on a
//! sleep: a sleep is too short on a loaded machine and too long everywhere else.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest any one wait of a test takes before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// How often [`eventually`] looks at its condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` holds, looking every [`POLL`]; panics, naming `what`, when it
/// still does not after [`TIMEOUT`].
#[track_caller]
pub fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_within(TIMEOUT, what, check);
}

/// [`eventually`] with a deadline of `timeout` instead of [`TIMEOUT`].
#[track_caller]
pub fn eventually_within(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    wait(timeout, what, || check().then_some(()));
}

/// Waits until `check` returns a value and returns it; panics, naming `what`, when it
/// returns `None` for [`TIMEOUT`].
#[track_caller]
pub fn eventually_some<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait(TIMEOUT, what, check)
}

#[track_caller]
fn wait<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Sends `signal` (`libc::SIGTERM`, ...) to the process `pid`.
pub fn signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("a pid fits in pid_t");
    // SAFETY: kill(2) takes no pointers; at worst it fails with ESRCH.
    unsafe { libc::kill(pid, signal) };
}

/// Sets its flag when dropped. Threads that run until a test sets `stop` then stop
/// even when an assertion fails first, instead of `std::thread::scope` waiting for
/// them forever.
#[derive(Debug)]
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// === impl KillOnDrop ===

/// A child process that is killed (SIGKILL) and reaped when dropped, so that no
/// process outlives the test that started it, whichever assertion failed. `None`
/// once the test stopped it itself.
#[derive(Debug)]
pub struct KillOnDrop(pub Option<Child>);

impl KillOnDrop {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        KillOnDrop(Some(child))
    }

    /// Spawns `command` with stdin closed and stderr appended to `log` (created when
    /// missing), so that a restarted process logs after the one before it.
    #[track_caller]
    pub fn spawn_logged(command: &mut Command, log: &Path) -> Self {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        Self::new(child)
    }

    /// The running child; panics once it was taken or stopped.
    #[track_caller]
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the process is running")
    }

    /// The child's pid; panics once it was taken or stopped.
    #[track_caller]
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("the process is running").id()
    }

    /// Whether the child is still guarded (not taken, killed or waited for).
    pub fn is_running(&self) -> bool {
        self.0.is_some()
    }

    /// Hands the child over: the caller now stops it.
    #[track_caller]
    pub fn take(&mut self) -> Child {
        self.0.take().expect("the process is running")
    }

    /// Sends `signal` to the child.
    #[track_caller]
    pub fn signal(&self, signal: i32) {
        self::signal(self.id(), signal);
    }

    /// Kills and reaps the child now, if it still runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the child to exit; kills it and panics, naming `what`, when it has
    /// not after [`TIMEOUT`].
    #[track_caller]
    pub fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let mut child = self.take();
        let mut exited = None;
        let deadline = Instant::now() + TIMEOUT;
        while exited.is_none() && Instant::now() < deadline {
            exited = child.try_wait().expect("waitpid");
            if exited.is_none() {
                std::thread::sleep(POLL);
            }
        }
        exited.unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {TIMEOUT:?} waiting for {what}");
        })
    }

    /// [`eventually`], failing at once, with the exit status, when the child exits
    /// first: what a test waits for at start-up.
    #[track_caller]
    pub fn eventually(&mut self, what: &str, mut check: impl FnMut() -> bool) {
        let child = self.child();
        wait(TIMEOUT, what, || {
            if check() {
                return Some(());
            }
            if let Some(status) = child.try_wait().expect("waitpid") {
                panic!("the process exited ({status}) before {what}");
            }
            None
        });
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `cmd` with stdin and stdout piped (stdin held open: closing it is how some
/// test agents are told to stop) and reads its stdout until a line satisfies `ready`;
/// the guarded child and the lines read. Panics, naming `what`, when no such line comes
/// within [`TIMEOUT`]. The rest of stdout is drained so the child never blocks on it.
#[track_caller]
pub fn start_until(
    mut cmd: Command,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> (KillOnDrop, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(TIMEOUT) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if ready(&line) {
                    // Keep draining so the child never blocks on a full pipe.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return (KillOnDrop::new(child), seen);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not get ready; it printed:\n{seen}");
            }
        }
    }
}
