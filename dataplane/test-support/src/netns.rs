//! A network namespace of the test's own, for the tunnel tests: a service listening
//! on the namespace's loopback cannot be reached from the root namespace, so when
//! traffic reaches it through innergate, the agent (running in the namespace too)
//! is the only way it can have come. A veth pair with addresses of its own links
//! the two namespaces, so the agent can dial innergate's tunnel listener.
//!
//! Needs root and `ip` (iproute2). Without them [`Netns::create`] returns an error
//! saying so: the tests fail with it, they never skip.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Slots of `10.200.0.0/16`, one /30 each (`.1` on the root side, `.2` in the
/// namespace).
const SLOTS: u32 = 1 << 14;

/// How many slots [`Netns::create`] tries before it gives up: a slot is taken when
/// its veth name already exists (another test, or one that crashed).
const SLOT_TRIES: u32 = 256;

/// Prefix of every namespace this module creates: `igt-PID-N-HINT`.
const PREFIX: &str = "igt-";

/// Namespaces this process has created, so that two in one process differ.
static CREATED: AtomicU32 = AtomicU32::new(0);

/// A network namespace with its loopback up and a veth pair to the root namespace;
/// deleted, with its veth, when dropped.
///
/// Stop the processes running inside before the guard drops (declare the guard
/// first, so it drops last): a namespace whose processes live on outlasts its name.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// The root side of the veth pair; `None` until it exists.
    host_veth: Option<String>,
    host_addr: Ipv4Addr,
    peer_addr: Ipv4Addr,
}

impl Netns {
    /// Creates a namespace named after `name_hint` (made unique), brings up its
    /// `lo` and links it to the root namespace with a veth pair on a /30 of
    /// `10.200.0.0/16` that no other live namespace of these tests uses.
    pub fn create(name_hint: &str) -> Result<Netns, String> {
        preflight()?;
        reap_stale();

        let pid = std::process::id();
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let hint: String = name_hint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect();
        let name = format!("{PREFIX}{pid}-{n}-{hint}");
        ip(&["netns", "add", &name]).map_err(|e| unavailable(&e))?;
        // From here on the guard deletes what exists, whichever step fails.
        let mut netns = Netns {
            name,
            host_veth: None,
            host_addr: Ipv4Addr::UNSPECIFIED,
            peer_addr: Ipv4Addr::UNSPECIFIED,
        };
        // Spread processes and namespaces over the slots.
        let start = pid.wrapping_mul(64).wrapping_add(n) % SLOTS;
        netns
            .link_up(start)
            .map_err(|e| format!("setting up namespace {}: {e}", netns.name))?;
        Ok(netns)
    }

    /// Brings up `lo` and links the namespace to the root one over the first free
    /// slot from `start`: the part of [`Netns::create`] after the namespace exists.
    fn link_up(&mut self, start: u32) -> Result<(), String> {
        ip(&["-n", &self.name, "link", "set", "lo", "up"])?;
        // The kernel's refusal of a second link with the same name is what
        // reserves a slot, across processes.
        let mut last_error = String::new();
        for slot in (0..SLOT_TRIES).map(|i| (start + i) % SLOTS) {
            let (host_veth, peer_veth) = (format!("igv{slot}h"), format!("igv{slot}n"));
            let made = ip(&[
                "link", "add", &host_veth, "type", "veth", "peer", "name", &peer_veth, "netns",
                &self.name,
            ]);
            match made {
                Ok(()) => {
                    self.host_veth = Some(host_veth.clone());
                    // slot < 2^14, so slot * 4 fits the last two octets.
                    let [a, b] = ((slot * 4) as u16).to_be_bytes();
                    self.host_addr = Ipv4Addr::new(10, 200, a, b + 1);
                    self.peer_addr = Ipv4Addr::new(10, 200, a, b + 2);
                    let host_cidr = format!("{}/30", self.host_addr);
                    let peer_cidr = format!("{}/30", self.peer_addr);
                    ip(&["addr", "add", &host_cidr, "dev", &host_veth])?;
                    ip(&["link", "set", &host_veth, "up"])?;
                    ip(&[
                        "-n", &self.name, "addr", "add", &peer_cidr, "dev", &peer_veth,
                    ])?;
                    ip(&["-n", &self.name, "link", "set", &peer_veth, "up"])?;
                    return Ok(());
                }
                Err(e) if e.contains("File exists") => last_error = e,
                Err(e) => return Err(e),
            }
        }
        Err(format!(
            "no free veth slot in {SLOT_TRIES} tries from slot {start}: {last_error}"
        ))
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: add the program's arguments and spawn it. The
    /// child's pid is the program's (`ip` execs it), so signals reach it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// The root namespace's end of the veth pair (a service there listening on it
    /// is what the namespace can reach).
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The namespace's end of the veth pair.
    pub fn peer_addr(&self) -> Ipv4Addr {
        self.peer_addr
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the veth, and with it the
        // pair; the root end is deleted by hand only if it survived.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns: cannot delete namespace {}: {e}", self.name);
        }
        if let Some(veth) = &self.host_veth {
            if ip(&["link", "show", veth]).is_ok() {
                if let Err(e) = ip(&["link", "del", veth]) {
                    eprintln!("netns: cannot delete veth {veth}: {e}");
                }
            }
        }
    }
}

/// Root and iproute2, checked before anything is created.
fn preflight() -> Result<(), String> {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "network namespaces unavailable: `ip netns` needs root, this test runs as uid {euid}"
        ));
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(unavailable(&failure("ip -V", &out))),
        Err(e) => Err(format!(
            "network namespaces unavailable: cannot run `ip` ({e}); install iproute2 \
             (scripts/sdk/install.sh does)"
        )),
    }
}

/// Deletes namespaces left by test processes that are gone (killed before their
/// guards dropped), so that crashed runs do not pile up.
fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `NAME` or `NAME (id: N)`.
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn unavailable(error: &str) -> String {
    format!("network namespaces unavailable: {error}")
}

/// Runs `ip ARGS`; the error names the command and carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let what = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failure(&what, &out))
    }
}

fn failure(what: &str, out: &Output) -> String {
    format!(
        "{what}: {} ({})",
        String::from_utf8_lossy(&out.stderr).trim(),
        out.status
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// Listens on the namespace's loopback, prints its port, and greets each
    /// connection with a marker, so that reaching it is told apart from reaching
    /// some other process on the same port number.
    const LISTENER: &str = "\
import socket
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b'inside-netns\\n')
    c.close()
";

    /// Connects to 127.0.0.1:PORT and prints what it read.
    const CLIENT: &str = "\
import socket, sys
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)
print(c.recv(64).decode(), end='')
";

    #[test]
    fn loopback_of_the_namespace_is_unreachable_from_the_root_namespace() {
        let ns = Netns::create("isolation").unwrap();

        let addrs = ns.command("ip").args(["-4", "addr"]).output().unwrap();
        let addrs = String::from_utf8_lossy(&addrs.stdout);
        assert!(addrs.contains("inet 127.0.0.1/8"), "{addrs}");
        assert!(
            addrs.contains(&format!("inet {}/30", ns.peer_addr())),
            "{addrs}"
        );

        let mut cmd = ns.command("python3");
        cmd.args(["-c", LISTENER]);
        let (listener, line) = crate::start_until(cmd, "the listener", |_| true);
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));

        // The listener is up: a client inside the namespace gets the marker.
        let inside = ns
            .command("python3")
            .args(["-c", CLIENT, &port.to_string()])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&inside.stdout), "inside-netns\n");

        // From the root namespace, 127.0.0.1:PORT is another host's loopback: refused,
        // or some unrelated listener, never the marker.
        let root_loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if let Ok(mut conn) = TcpStream::connect_timeout(&root_loopback, Duration::from_secs(2)) {
            conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut got = Vec::new();
            let _ = conn.read_to_end(&mut got);
            assert!(!got.starts_with(b"inside-netns"), "reached the namespace");
        }

        // The veth routes to the namespace (a quick refusal, not a timeout), and the
        // listener is not on it either.
        let peer = SocketAddr::from((ns.peer_addr(), port));
        let refused = TcpStream::connect_timeout(&peer, Duration::from_secs(2)).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");

        drop(listener);
    }

    #[test]
    fn two_namespaces_get_different_names_and_addresses() {
        let a = Netns::create("a").unwrap();
        let b = Netns::create("b").unwrap();
        assert_ne!(a.name(), b.name());
        assert_ne!(a.peer_addr(), b.peer_addr());
        assert_ne!(a.host_addr(), b.host_addr());
    }
}
