//! The machine the bench runs on: CPU pinning, file limits, processes it starts, and
//! what it reads back from /proc (resident memory, CPU time).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

// === CPU sets ===

/// A list of CPUs as taskset writes it (`1`, `0,2`, `2-3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSet(pub Vec<usize>);

impl CpuSet {
    /// Parses `1`, `0,2` or `2-3` (CPU numbers separated by `+` are accepted too, so
    /// that a set fits inside `--pin proxy=0+1,load=2`).
    pub fn parse(text: &str) -> Result<CpuSet> {
        let mut cpus = Vec::new();
        for part in text.split(['+', ',']).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
                    if a > b {
                        bail!("cpu range `{part}` runs backwards");
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(part.parse().with_context(|| format!("cpu `{part}`"))?),
            }
        }
        if cpus.is_empty() {
            bail!("empty cpu list `{text}`");
        }
        Ok(CpuSet(cpus))
    }

    /// The list in taskset's `-c` form.
    pub fn taskset_list(&self) -> String {
        let names: Vec<String> = self.0.iter().map(usize::to_string).collect();
        names.join(",")
    }

    /// Pins the calling thread (and the threads it starts later) to this set.
    pub fn pin_current_thread(&self) -> Result<()> {
        // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it for numbers below
        // CPU_SETSIZE, which is checked; sched_setaffinity reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in &self.0 {
                if cpu >= libc::CPU_SETSIZE as usize {
                    bail!("cpu {cpu} is out of range");
                }
                libc::CPU_SET(cpu, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
            }
        }
        Ok(())
    }
}

/// Where the systems under test run and where the load (client and backend) runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pinning {
    /// CPUs of the proxies (innergate, nginx, HAProxy).
    pub proxy: Option<CpuSet>,
    /// CPUs of wrk, the bench's own clients and the backend.
    pub load: Option<CpuSet>,
}

impl Pinning {
    /// Parses `proxy=1,load=0` (either part may be left out; sets use `+` or `-`:
    /// `proxy=1-3,load=0`).
    pub fn parse(text: &str) -> Result<Pinning> {
        let mut pinning = Pinning::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (role, cpus) = part
                .split_once('=')
                .with_context(|| format!("`{part}` is not ROLE=CPUS (proxy=1,load=0)"))?;
            let cpus = CpuSet::parse(cpus)?;
            match role {
                "proxy" => pinning.proxy = Some(cpus),
                "load" => pinning.load = Some(cpus),
                _ => bail!("unknown role `{role}`: use proxy or load"),
            }
        }
        Ok(pinning)
    }

    /// How the results table names it.
    pub fn describe(&self) -> String {
        let part = |role: &str, set: &Option<CpuSet>| match set {
            Some(s) => format!("{role} on cpu {}", s.taskset_list()),
            None => format!("{role} unpinned"),
        };
        format!(
            "{}, {}",
            part("proxies", &self.proxy),
            part("load", &self.load)
        )
    }
}

/// A command, run under `taskset` when `cpus` is set, that inherits no descriptor
/// but its standard three.
pub fn pinned_command(program: &Path, cpus: Option<&CpuSet>) -> Command {
    let mut command = match cpus {
        Some(set) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(set.taskset_list()).arg(program);
            c
        }
        None => Command::new(program),
    };
    // Sockets accepted through io_uring (the backend's) are not close-on-exec. A
    // child must not inherit them: wrk sizes its event loop for its own connections
    // and fails to connect ("Socket errors: connect") when its descriptors start
    // above that.
    // SAFETY: close_range is async-signal-safe and touches only descriptors ≥ 3,
    // marking them close-on-exec (std's own exec-error pipe already is).
    unsafe {
        command.pre_exec(|| {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    command
}

// === limits ===

/// Raises the open-file limit as far as this process may (root: 1,048,576; others:
/// the hard limit), so that 10,000 client connections fit, in us and in the proxies
/// that inherit it.
pub fn raise_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write one plain struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let wanted = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: limit.rlim_max.max(1 << 20),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            return wanted.rlim_cur;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    }
}

/// The open-file limit in force now.
pub fn file_limit() -> u64 {
    // SAFETY: getrlimit writes one plain struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur
    }
}

// === processes ===

/// A process the bench started; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Process {
    /// Starts `command` with its output in `log`.
    pub fn start(name: &str, mut command: Command, log: &Path) -> Result<Process> {
        let out = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id (of taskset's exec'd program when pinned: taskset execs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the process's log when it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            bail!("{} exited ({status}):\n{log}", self.name);
        }
        Ok(())
    }

    /// Waits until `addr` accepts connections (or the process exits).
    pub fn wait_for_port(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.check_running()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} does not listen on {addr}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a line of the process's output satisfies `ready` (or the process
    /// exits); returns that line.
    pub fn wait_for_line(&mut self, what: &str, ready: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| ready(l)) {
                return Ok(line.to_string());
            }
            self.check_running()?;
            if Instant::now() > deadline {
                bail!("{} did not print {what}:\n{log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the process and its children, in KiB.
    pub fn rss_kib(&self) -> u64 {
        tree(self.pid()).iter().map(|&p| rss_kib(p)).sum()
    }

    /// CPU time (user + system) of the process and its children, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        tree(self.pid()).iter().map(|&p| cpu_ticks(p)).sum::<u64>() as f64 / hz
    }
}

/// What the bench reads CPU time from: one process tree, or every process of a
/// system that runs as several (a tunnel's server and client).
pub trait CpuTime: std::fmt::Debug {
    /// CPU time (user + system) so far, in seconds.
    fn cpu_seconds(&self) -> f64;
}

impl CpuTime for Process {
    fn cpu_seconds(&self) -> f64 {
        Process::cpu_seconds(self)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child; nginx and HAProxy pass SIGTERM to workers.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pid` and its descendants (nginx and HAProxy workers).
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    let parents: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat_field(p, 3)?)))
        .collect();
    while i < all.len() {
        let parent = all[i];
        all.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    all
}

/// Field `index` (0-based, after the command name) of /proc/PID/stat.
fn stat_field(pid: u32, index: usize) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(index - 2)?.parse().ok()
}

fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of stat(5), 11 and 12 after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A port on 127.0.0.1 that was free a moment ago (for peers whose configuration
/// names the port; the bench's own listeners bind port 0 and keep their socket).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Where `program` is: on PATH, or where `cargo install` puts it (`$CARGO_HOME/bin`,
/// `~/.cargo/bin`), which a shell without rustup's profile may not have on PATH.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    std::env::split_paths(&path)
        .chain(cargo_home.map(|c| c.join("bin")))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// What `program ARGS` prints on stdout (empty when it cannot run), such as its
/// version for the results.
pub fn program_output(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

// === the machine ===

/// What the results were measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cores: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// `uname -r`.
    pub kernel: String,
    /// Total memory in GiB.
    pub memory_gib: f64,
}

impl Machine {
    /// Reads the machine's description.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_sets_and_pinning_parse() {
        assert_eq!(CpuSet::parse("1").unwrap(), CpuSet(vec![1]));
        assert_eq!(CpuSet::parse("0+2").unwrap(), CpuSet(vec![0, 2]));
        assert_eq!(CpuSet::parse("2-4").unwrap(), CpuSet(vec![2, 3, 4]));
        assert!(CpuSet::parse("3-1").is_err());
        assert!(CpuSet::parse("x").is_err());
        let p = Pinning::parse("proxy=1,load=0").unwrap();
        assert_eq!(p.proxy, Some(CpuSet(vec![1])));
        assert_eq!(p.load, Some(CpuSet(vec![0])));
        assert_eq!(p.describe(), "proxies on cpu 1, load on cpu 0");
        assert!(Pinning::parse("wrk=0").is_err());
    }

    #[test]
    fn reads_itself_from_proc() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        assert!(tree(me).contains(&me));
    }
}
