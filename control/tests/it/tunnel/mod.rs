//! Agent tunnels end to end: the services run inside a network namespace of the
//! test's own, listening only on its loopback, so the gateway has no route to them;
//! the agent runs in the namespace too and dials the gateway's tunnel listener over
//! the namespace's veth. Whatever reaches a service came through the tunnel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use innergate_table::link::ControlClient;
use innergate_test_support::netns::Netns;

use crate::support::*;

mod commands;
mod sdks;

pub(super) const TCP_PORT: u16 = 15432;
pub(super) const TLS_PORT: u16 = 18443;

/// A tiny service for the namespace: `http PORT BODY`, `echo PORT` (tcp, answers
/// `echo:` + each line) or `https PORT CERT KEY BODY`. Prints `ready` once it listens.
const SERVICE: &str = r#"
import http.server, socket, socketserver, ssl, sys, threading
mode, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if mode == "slow":
            import time; time.sleep(30)
        body = BODY.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
if mode == "echo":
    class E(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(b"echo:" + line)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", port), E)
else:
    BODY = sys.argv[-1]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    srv.daemon_threads = True
    if mode == "https":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"#;

/// The gateway (data plane with a tunnel listener on the namespace's veth, and
/// control), one account, and the namespace. Fields drop in order: the namespace last.
pub(super) struct Gateway {
    pub(super) dp: DataPlane,
    pub(super) control: Control,
    pub(super) key: String,
    /// The tunnel listener, as agents in the namespace dial it.
    pub(super) tunnel: String,
    /// The data plane's admin listener (health, metrics).
    admin: SocketAddr,
    dir: tempfile::TempDir,
    pub(super) ns: Netns,
}

impl Gateway {
    pub(super) fn start() -> Gateway {
        let ns = Netns::create("tunnel").unwrap_or_else(|e| {
            panic!("the tunnel tests need a network namespace of their own: {e}")
        });
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path(), &ns.host_addr().to_string());
        let tunnel_bind = format!("{}:0", ns.host_addr());
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let cert = dir.path().join("tunnel.crt");
        let key = dir.path().join("tunnel.key");
        let dp = DataPlane::start_with(
            dir.path(),
            &[
                "--port-map",
                &format!("{TCP_PORT}=0"),
                "--port-map",
                &format!("{TLS_PORT}=0"),
                "--tunnel",
                &tunnel_bind,
                "--tunnel-cert",
                cert.to_str().unwrap(),
                "--tunnel-key",
                key.to_str().unwrap(),
                "--tunnel-heartbeat",
                "300ms",
                "--tunnel-timeout",
                "3s",
                "--admin",
                &admin.to_string(),
            ],
        );
        let tunnel = ControlClient::connect(&dp.socket, TIMEOUT)
            .unwrap()
            .status()
            .unwrap()
            .tunnel_addr;
        assert!(
            !tunnel.is_empty(),
            "the data plane reports its tunnel address"
        );
        let control = Control::start_with_args(
            &dir.path().join("control"),
            Some(&dp.socket),
            "30s",
            &["--tunnel-url", &tunnel],
        );
        let key = control.account("acme");
        Gateway {
            dp,
            control,
            key,
            tunnel,
            admin,
            dir,
            ns,
        }
    }

    /// A data plane metric without labels.
    fn dp_metric(&self, name: &str) -> u64 {
        get(self.admin, "admin", "/metrics")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a service inside the namespace.
    pub(super) fn service(&self, args: &[&str]) -> KillOnDrop {
        let mut cmd = self.ns.command("python3");
        cmd.arg("-c").arg(SERVICE).args(args);
        start_until(cmd, "a namespace service", |l| l == "ready").0
    }

    /// Starts `innergate PROTO UPSTREAM --url URL` inside the namespace, with only the
    /// tunnel address, an authtoken and the CA; returns once it bound.
    fn agent(&self, proto: &str, upstream: &str, url: &str, extra: &[&str]) -> KillOnDrop {
        self.try_agent(proto, upstream, url, &self.key, extra)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_agent(
        &self,
        proto: &str,
        upstream: &str,
        url: &str,
        token: &str,
        extra: &[&str],
    ) -> Result<KillOnDrop, String> {
        let mut cmd = self.ns.command(innergate_bin());
        cmd.args([proto, upstream, "--url", url, "--server-addr", &self.tunnel])
            .args(["--authtoken", token])
            .arg("--tunnel-ca")
            .arg(self.path("ca.pem"))
            .args(extra)
            .env_remove("INNERGATE_API_KEY")
            .env_remove("INNERGATE_API_URL");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if line.contains(" -> ") {
            std::thread::spawn(move || {
                let mut sink = String::new();
                while out.read_line(&mut sink).unwrap_or(0) > 0 {}
            });
            // Its log goes on to the test's stderr (a pipe nobody reads would fill and
            // stop the agent).
            let mut err = BufReader::new(child.stderr.take().unwrap());
            std::thread::spawn(move || {
                let mut line = String::new();
                while err.read_line(&mut line).unwrap_or(0) > 0 {
                    eprint!("agent: {line}");
                    line.clear();
                }
            });
            return Ok(KillOnDrop::new(child));
        }
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = child.wait();
        Err(format!("the agent did not bind {url}: {line}{err}"))
    }

    pub(super) fn create(&self, url: &str, policy: &str) {
        self.control
            .client(&self.key)
            .create(&cloud(url, policy))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

/// A CA and a tunnel certificate for `ip`, and a certificate for the https service.
fn write_pki(dir: &Path, ip: &str) {
    let ca = TestCa::new("tunnel test CA");
    ca.write(dir);
    ca.write_leaf(dir, "tunnel", &[ip]);
    ca.write_leaf(dir, "service", &["secure.example.com"]);
}

pub(super) fn tcp_forward(url: &str) -> String {
    format!("on_tcp_connect:\n  - actions:\n      - type: forward-internal\n        config: {{url: '{url}'}}\n")
}

/// One line through a tcp endpoint: what comes back.
pub(super) fn tcp_round_trip(addr: SocketAddr, line: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut got = vec![0u8; 256];
    let mut n = 0;
    while !got[..n].ends_with(b"\n") {
        match s.read(&mut got[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    String::from_utf8_lossy(&got[..n]).to_string()
}

/// The service's ports inside the namespace.
pub(super) const WEB: &str = "18001";
pub(super) const DB: &str = "18002";
pub(super) const SECURE: &str = "18003";

#[test]
fn an_agent_behind_a_namespace_serves_http_tcp_and_tls_over_one_outbound_session() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "hello from the namespace"]);
    let _db = gw.service(&["echo", DB]);
    let (cert, key) = (gw.path("service.crt"), gw.path("service.key"));
    let _secure = gw.service(&[
        "https",
        SECURE,
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        "secure hello",
    ]);
    // The gateway itself cannot reach them: they listen on the namespace's loopback.
    for port in [WEB, DB, SECURE] {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "port {port} must not be reachable from the gateway's namespace"
        );
    }
    gw.create("http://app.example.com", &forward("https://web.internal"));
    gw.create(
        &format!("tcp://db.example.com:{TCP_PORT}"),
        &tcp_forward("tcp://db.internal:5432"),
    );
    gw.create(
        &format!("tls://secure.example.com:{TLS_PORT}"),
        &tcp_forward("tls://secure.internal:443"),
    );
    let _http = gw.agent("http", WEB, "https://web.internal", &[]);
    let _tcp = gw.agent("tcp", DB, "tcp://db.internal:5432", &[]);
    let _tls = gw.agent("tls", SECURE, "tls://secure.internal:443", &[]);

    let http = gw.dp.http_addr();
    for _ in 0..10 {
        assert_eq!(
            http_get(http, "app.example.com"),
            (200, "hello from the namespace".to_string())
        );
    }
    let tcp = gw.dp.listener(TCP_PORT);
    assert_eq!(tcp_round_trip(tcp, "ping\n"), "echo:ping\n");
    // Several windows' worth both ways at once: flow control holds up under bulk.
    let mut bulk = TcpStream::connect(tcp).unwrap();
    bulk.set_read_timeout(Some(TIMEOUT)).unwrap();
    let line = format!("{}\n", "x".repeat(1023));
    let lines = 3 * 1024;
    let mut writer = bulk.try_clone().unwrap();
    let sent = std::thread::spawn(move || {
        for _ in 0..lines {
            writer.write_all(line.as_bytes()).unwrap();
        }
    });
    let want = lines * (1024 + "echo:".len());
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < want {
        let n = bulk.read(&mut buf).expect("the echo keeps coming");
        assert!(n > 0, "the stream ended after {got} of {want} bytes");
        got += n;
    }
    sent.join().unwrap();
    assert_eq!(got, want);
    // TLS passes through: the client's handshake reaches the service in the
    // namespace, which proves itself with its own certificate.
    let tls = gw.dp.listener(TLS_PORT);
    let ca = std::fs::read(gw.path("ca.pem")).unwrap();
    let (response, _) = tls_get(
        &tls_client_config_pem(&ca),
        tls,
        "secure.example.com",
        "secure.example.com",
    );
    assert_eq!(
        (response.status, response.text()),
        (200, "secure hello".into())
    );

    // The endpoints the agents bound are in the API, held by their tunnels.
    let page = gw.control.client(&gw.key).list(None, None).unwrap();
    let tunnelled: Vec<_> = page
        .endpoints
        .iter()
        .filter(|e| e.held_by.to_string() == "tunnel")
        .map(|e| e.url.clone())
        .collect();
    assert_eq!(tunnelled.len(), 3, "{tunnelled:?}");
}

#[test]
fn a_killed_agent_goes_offline_and_a_restarted_one_serves_again() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "up"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let mut agent = gw.agent("http", WEB, "https://web.internal", &[]);
    let http = gw.dp.http_addr();
    assert_eq!(http_get(http, "app.example.com").0, 200);
    // SIGKILL: no goodbye; the session's end (or its silence) takes the endpoint
    // offline, and the endpoint-offline code says so.
    agent.kill();
    eventually(
        "the endpoint to go offline after the agent was killed",
        || http_get(http, "app.example.com").0 == 404,
    );
    let _agent = gw.agent("http", WEB, "https://web.internal", &[]);
    assert_eq!(http_get(http, "app.example.com"), (200, "up".to_string()));
}

#[test]
fn a_session_with_another_accounts_or_no_valid_credential_is_refused() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "acme's"]);
    let _owner = gw.agent("http", WEB, "https://web.internal", &[]);
    let err = gw
        .try_agent("http", WEB, "https://web.internal", "igt_nonsense", &[])
        .expect_err("an unknown authtoken is refused");
    assert!(err.contains("authtoken"), "{err}");
    // Another account cannot take acme's public URL.
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let other = gw.control.account("globex");
    let err = gw
        .try_agent("http", WEB, "http://app.example.com", &other, &[])
        .expect_err("another account's URL is refused");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(
        http_get(gw.dp.http_addr(), "app.example.com"),
        (200, "acme's".to_string())
    );
}

#[test]
fn a_revoked_authtoken_ends_its_sessions() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "while it lasts"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let api = gw.control.client(&gw.key);
    let token = api
        .create_authtoken(&Default::default())
        .expect("an authtoken");
    let _agent = gw
        .try_agent("http", WEB, "https://web.internal", &token.token, &[])
        .unwrap();
    let http = gw.dp.http_addr();
    assert_eq!(http_get(http, "app.example.com").0, 200);
    api.revoke_authtoken(&token.authtoken.id).unwrap();
    eventually("the revoked token's session to end", || {
        http_get(http, "app.example.com").0 == 404
    });
}

#[test]
fn pooled_agents_share_traffic_and_the_survivor_takes_it_all() {
    let gw = Gateway::start();
    let _a = gw.service(&["http", "18011", "a"]);
    let _b = gw.service(&["http", "18012", "b"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let pool = ["--pooling-enabled"];
    let mut agent_a = gw.agent("http", "18011", "https://web.internal", &pool);
    let _agent_b = gw.agent("http", "18012", "https://web.internal", &pool);
    let http = gw.dp.http_addr();
    let mut seen = std::collections::BTreeSet::new();
    eventually("both pool members to answer", || {
        let (status, body) = http_get(http, "app.example.com");
        assert_eq!(status, 200);
        seen.insert(body);
        seen.len() == 2
    });
    agent_a.kill();
    // After the liveness bound, every request reaches the survivor without an error.
    eventually("the killed member to leave the pool", || {
        (0..10).all(|_| http_get(http, "app.example.com") == (200, "b".to_string()))
    });
    for _ in 0..30 {
        assert_eq!(http_get(http, "app.example.com"), (200, "b".to_string()));
    }
}

#[test]
fn the_agent_reconnects_after_the_data_plane_restarts() {
    let mut gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "still here"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let _agent = gw.agent("http", WEB, "https://web.internal", &[]);
    assert_eq!(http_get(gw.dp.http_addr(), "app.example.com").0, 200);
    // The same tunnel port after the restart, so that the agent finds it again.
    let tunnel_port = gw.tunnel.rsplit(':').next().unwrap().to_string();
    gw.dp.kill();
    gw.dp
        .set_extra_arg("--tunnel", &format!("{}:{tunnel_port}", gw.ns.host_addr()));
    gw.dp.spawn();
    let http = gw.dp.http_addr();
    eventually("the agent to reconnect and serve again", || {
        http_get(http, "app.example.com") == (200, "still here".to_string())
    });
}

#[test]
fn an_agent_whose_packets_are_dropped_is_noticed_within_the_liveness_bound() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "reachable"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let _agent = gw.agent("http", WEB, "https://web.internal", &[]);
    let http = gw.dp.http_addr();
    assert_eq!(http_get(http, "app.example.com").0, 200);
    // Pull the cable: the namespace's side of the veth goes down, so the agent's
    // packets vanish without a reset; only the missing heartbeats tell.
    let down = gw
        .ns
        .command("sh")
        .args([
            "-c",
            "for i in $(ls /sys/class/net); do [ $i = lo ] || ip link set dev $i down; done",
        ])
        .status()
        .unwrap();
    assert!(down.success());
    eventually(
        "the silent session to be ended by the liveness bound",
        || http_get(http, "app.example.com").0 == 404,
    );
}

#[test]
fn an_upgrade_with_takeover_under_load_keeps_the_agent_serving() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "before and after"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let _agent = gw.agent("http", WEB, "https://web.internal", &[]);
    let old_http = gw.dp.http_addr();
    assert_eq!(http_get(old_http, "app.example.com").0, 200);
    // Load on the old process while the new one takes over.
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let served = std::sync::Arc::new(AtomicU32::new(0));
    let load = {
        let (stop, served) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // The old listener closes during the drain: refused connects are part
                // of the upgrade, not of this test's claims.
                if TcpStream::connect(old_http).is_ok()
                    && http_get(old_http, "app.example.com").0 == 200
                {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    eventually("the load to reach the old process", || {
        served.load(Ordering::Relaxed) > 0
    });
    // The new process binds the same tunnel port (SO_REUSEPORT) and the control
    // socket (--takeover); the old one drains, its sessions end, and the agent
    // reconnects to the new one by itself.
    // The new process binds the same tunnel port, where the agent dials back.
    let tunnel = gw.tunnel.clone();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut new = gw
        .dp
        .takeover(&[("--tunnel", &tunnel), ("--admin", &admin)]);
    gw.dp.terminate();
    let new_http = new.http_addr();
    eventually("the agent to serve through the new process", || {
        http_get(new_http, "app.example.com") == (200, "before and after".to_string())
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    for _ in 0..20 {
        assert_eq!(http_get(new_http, "app.example.com").0, 200);
    }
    new.kill();
}

#[test]
fn a_request_in_flight_on_a_lost_session_ends_in_502() {
    let gw = Gateway::start();
    let _slow = gw.service(&["slow", WEB, "too late"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let mut agent = gw.agent("http", WEB, "https://web.internal", &[]);
    let http = gw.dp.http_addr();
    let pending = std::thread::spawn(move || http_get(http, "app.example.com"));
    // The request waits at the service; then its session goes away under it.
    eventually("the request to reach the service", || {
        gw.ns
            .command("sh")
            .args([
                "-c",
                &format!("ss -Htn state established '( sport = :{WEB} )' | wc -l"),
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
    });
    agent.kill();
    let (status, _) = pending.join().unwrap();
    assert_eq!(status, 502, "a lost session is a bad gateway, not a hang");
}

#[test]
fn innergate_s_agent_opens_a_session_per_worker_so_no_request_crosses_threads() {
    let gw = Gateway::start();
    let _web = gw.service(&["http", WEB, "local"]);
    gw.create("http://app.example.com", &forward("https://web.internal"));
    let _agent = gw.agent("http", WEB, "https://web.internal", &[]);
    // The data plane runs 2 workers: the agent holds one session on each.
    eventually("a session on every worker", || {
        gw.dp_metric("innergate_tunnel_sessions") == 2
    });
    let http = gw.dp.http_addr();
    let batch = || {
        for _ in 0..10 {
            assert_eq!(
                http_get(http, "app.example.com"),
                (200, "local".to_string())
            );
        }
    };
    // Until the second session's Bind is done, its worker hands requests over.
    eventually("both sessions to carry the endpoint", || {
        let before = gw.dp_metric("innergate_tunnel_handovers_total");
        batch();
        gw.dp_metric("innergate_tunnel_handovers_total") == before
    });
    let before = gw.dp_metric("innergate_tunnel_handovers_total");
    for _ in 0..3 {
        batch();
    }
    assert_eq!(
        gw.dp_metric("innergate_tunnel_handovers_total"),
        before,
        "no request crossed threads"
    );
    // Both sessions carry one endpoint.
    let page = gw.control.client(&gw.key).list(None, None).unwrap();
    let tunnelled = page
        .endpoints
        .iter()
        .filter(|e| e.held_by.to_string() == "tunnel")
        .count();
    assert_eq!(tunnelled, 1);
}
