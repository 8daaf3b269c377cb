//! The test agents themselves, before innergate's tunnel listener exists to test
//! them against: each agent runs in a network namespace, dials a mock of the
//! hosted service's agent ingress (TLS + muxado, just enough of Auth, Bind,
//! heartbeats and Proxy streams) over the namespace's veth, binds one endpoint of
//! each kind, forwards a proxied connection per endpoint to an echo upstream on the
//! namespace's loopback, and closes its session when told to stop.
//!
//! What this pins down is the agents' contract (flags, stdout lines, exit codes)
//! and what the SDKs put on the wire, which the tunnel listener must accept: see
//! the assertions on the recorded Bind requests.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use innergate_test_support::{eventually, start_until, KillOnDrop, Netns, TestCa};
use muxado::typed::{StreamType, TypedAccept, TypedOpenClose, TypedSession, TypedStream};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AUTH: u32 = 0;
const BIND: u32 = 1;
const UNBIND: u32 = 2;
const PROXY: u32 = 3;
const HEARTBEAT: u32 = 0xFFFF_FFFF;
const TOKEN: &str = "mock-authtoken";

#[test]
fn rust_agent_binds_forwards_and_closes_on_sigterm() {
    exercise(rust_agent(), Stop::Sigterm, Bindings::Explicit);
}

#[test]
fn python_agent_binds_forwards_and_closes_on_stdin_eof() {
    exercise(python_agent(), Stop::StdinEof, Bindings::FromHost);
}

#[test]
fn rust_agent_closes_on_stdin_eof() {
    exercise(rust_agent(), Stop::StdinEof, Bindings::Explicit);
}

#[test]
fn python_agent_closes_on_sigint() {
    exercise(python_agent(), Stop::Sigint, Bindings::FromHost);
}

#[test]
fn refused_auth_and_bind_exit_2_with_the_servers_message() {
    let mock = Mock::start(Ipv4Addr::LOCALHOST.into());
    for (name, agent) in [("rust", rust_agent()), ("python", python_agent())] {
        let refused = |token: &str, endpoint: &str| {
            let mut command = agent_command(&agent);
            command
                .arg("--server-addr")
                .arg(mock.addr.to_string())
                .arg("--ca-cert")
                .arg(&mock.ca_file)
                .args(["--authtoken", token, "--endpoint", endpoint])
                .stdin(Stdio::null());
            let out = command.output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
            assert!(out.stdout.is_empty(), "{name}: {out:?}");
            String::from_utf8(out.stderr).unwrap()
        };
        let stderr = refused("wrong", "tcp,tcp://db.internal:1,tcp://127.0.0.1:1");
        assert!(stderr.contains("unknown authtoken"), "{name}: {stderr}");
        let stderr = refused(TOKEN, "https,https://refused.internal,http://127.0.0.1:1");
        assert!(
            stderr.contains("refused.internal is taken"),
            "{name}: {stderr}"
        );
    }
}

fn rust_agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ngrok-sdk-agent"))
}

/// The Python agent, run by the venv's python that scripts/sdk/install.sh prints.
fn python_agent() -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // scripts/test.sh installs it first and says where; otherwise install it once for
    // every test of this binary (two installs at once would race on the venv).
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        if let Ok(p) = std::env::var("INNERGATE_SDK_PYTHON") {
            return p;
        }
        let out = Command::new(root.join("scripts/sdk/install.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/sdk/install.sh");
        assert!(out.status.success(), "scripts/sdk/install.sh failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    });
    let mut command = Command::new(python);
    command.arg(root.join("scripts/sdk/python_agent.py"));
    command
}

/// A fresh copy of `agent` (a `Command` cannot be cloned).
fn agent_command(agent: &Command) -> Command {
    let mut command = Command::new(agent.get_program());
    command.args(agent.get_args());
    command
}

/// How the test stops the agent.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Sigterm,
    Sigint,
    StdinEof,
}

/// What the SDK sends for a `*.internal` host.
#[derive(Debug, Clone, Copy)]
enum Bindings {
    /// `Bindings: ["internal"]` (the Rust SDK's `binding()`).
    Explicit,
    /// `Bindings: []`: the Python SDK has no `binding()`, the host says it all.
    FromHost,
}

fn exercise(agent: Command, stop: Stop, bindings: Bindings) {
    let ns = Netns::create("agent").unwrap();
    let mock = Mock::start(ns.host_addr().into());
    let echo = Echo::start(&ns);

    let mut command = ns.command(agent.get_program());
    command.args(agent.get_args());
    let upstream = |scheme: &str| format!("{scheme}://127.0.0.1:{}", echo.port);
    command
        .arg("--server-addr")
        .arg(mock.addr.to_string())
        .arg("--ca-cert")
        .arg(&mock.ca_file)
        .args(["--authtoken", TOKEN, "--heartbeat-interval-ms", "1000"])
        .arg("--endpoint")
        .arg(format!("https,https://app.internal,{}", upstream("http")))
        .arg("--endpoint")
        .arg(format!(
            "http,http://pool.internal,{},pool",
            upstream("http")
        ))
        .arg("--endpoint")
        .arg(format!("tcp,tcp://db.internal:5432,{}", upstream("tcp")))
        .arg("--endpoint")
        .arg(format!("tls,tls://secure.internal:443,{}", upstream("tls")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut agent = KillOnDrop::new(command.spawn().expect("start the agent"));
    let mut stdin = agent.child().stdin.take();
    let mut stdout = BufReader::new(agent.child().stdout.take().unwrap());

    let mut endpoints = Vec::new();
    loop {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the agent exited before READY");
        if line.trim() == "READY" {
            break;
        }
        endpoints.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let urls: Vec<_> = endpoints.iter().map(|e| e["url"].clone()).collect();
    assert_eq!(
        urls,
        [
            "https://app.internal",
            "http://pool.internal",
            "tcp://db.internal:5432",
            "tls://secure.internal",
        ]
    );
    let protos: Vec<_> = endpoints.iter().map(|e| e["proto"].clone()).collect();
    assert_eq!(protos, ["https", "http", "tcp", "tls"]);

    let recorded = mock.state.lock().unwrap().clone();
    assert_eq!(recorded.authtokens, [TOKEN]);
    let internal = match bindings {
        Bindings::Explicit => json!(["internal"]),
        Bindings::FromHost => json!([]),
    };
    for (bind, pooled) in recorded.binds.iter().zip([false, true, false, false]) {
        assert_eq!(
            bind.request["Extra"]["Bindings"], internal,
            "{}",
            bind.request
        );
        assert_eq!(
            bind.request["Extra"]["PoolingEnabled"], pooled,
            "{}",
            bind.request
        );
    }
    assert_eq!(
        recorded.binds[2].request["Opts"]["Addr"],
        "db.internal:5432"
    );
    // No TLSTermination: a passthrough tls endpoint.
    assert_eq!(
        recorded.binds[3].request["Opts"]["TLSTermination"],
        Value::Null
    );

    // One proxied connection per endpoint, bytes in and the same bytes back. The tls
    // endpoint forwards to a tls:// upstream with plain bytes: they come back only
    // because the SDK does not wrap a passthrough endpoint's bytes in TLS again.
    for (bind, endpoint) in recorded.binds.iter().zip(&endpoints) {
        assert_eq!(endpoint["id"], bind.id.as_str());
        let payload = format!("through {}\n", bind.id);
        assert_eq!(mock.proxy(bind, payload.as_bytes()), payload.as_bytes());
    }

    eventually("a heartbeat from the agent", || {
        mock.state.lock().unwrap().heartbeats > 0
    });

    match stop {
        Stop::Sigterm => agent.signal(libc::SIGTERM),
        Stop::Sigint => agent.signal(libc::SIGINT),
        Stop::StdinEof => drop(stdin.take()),
    }
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "CLOSED");
    let status = agent.wait_exit("the agent's exit");
    assert!(status.success(), "{status}");
    eventually("the mock to see the session end", || {
        mock.state.lock().unwrap().sessions_ended == 1
    });
    drop(stdin);
}

// === impl Mock ===

/// A mock of the hosted service's agent ingress: records what agents send,
/// answers Auth, Bind and Unbind, echoes heartbeats, and opens Proxy streams on
/// request.
struct Mock {
    addr: SocketAddr,
    ca_file: PathBuf,
    state: Arc<Mutex<Recorded>>,
    /// The open half of the (one) agent session, to start Proxy streams on.
    opener: Arc<Mutex<Option<muxado::typed::Typed<muxado::MuxadoOpen>>>>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone, Default)]
struct Recorded {
    authtokens: Vec<String>,
    binds: Vec<Bound>,
    unbinds: Vec<String>,
    heartbeats: usize,
    sessions_ended: usize,
}

#[derive(Debug, Clone)]
struct Bound {
    id: String,
    request: Value,
}

impl Mock {
    fn start(ip: IpAddr) -> Mock {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("mock ingress CA");
        ca.write(dir.path());
        let ca_file = dir.path().join("ca.pem");
        let (cert, key) = ca.issue(&[&ip.to_string()]);
        use rustls::pki_types::pem::PemObject;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((ip, 0)))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(Recorded::default()));
        let opener = Arc::new(Mutex::new(None));
        let (s, o) = (state.clone(), opener.clone());
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, s, o) = (acceptor.clone(), s.clone(), o.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let session = muxado::SessionBuilder::new(tls).server().start();
                    let (open, accept) = muxado::typed::Typed::new(session).split_typed();
                    *o.lock().unwrap() = Some(open);
                    serve(accept, s.clone()).await;
                    s.lock().unwrap().sessions_ended += 1;
                });
            }
        });
        Mock {
            addr,
            ca_file,
            state,
            opener,
            runtime,
            _dir: dir,
        }
    }

    /// Opens a Proxy stream for `bind`'s endpoint as the service does for a
    /// client connection, sends `payload` and returns as many bytes as came back.
    fn proxy(&self, bind: &Bound, payload: &[u8]) -> Vec<u8> {
        let mut open = self.opener.lock().unwrap().clone().expect("a session");
        let header = json!({
            "Id": bind.id,
            "ClientAddr": "192.0.2.7:40000",
            "Proto": bind.request["Proto"],
            "EdgeType": "0",
            "PassthroughTLS": false,
        })
        .to_string();
        self.runtime.block_on(async {
            let mut stream = open.open_typed(StreamType::clamp(PROXY)).await.unwrap();
            stream.write_i64_le(header.len() as i64).await.unwrap();
            stream.write_all(header.as_bytes()).await.unwrap();
            stream.write_all(payload).await.unwrap();
            let mut back = vec![0; payload.len()];
            tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
                .await
                .expect("the echo within 10 s")
                .unwrap();
            back
        })
    }
}

/// Answers the streams an agent opens until its session ends.
async fn serve(mut accept: impl TypedAccept + Send, state: Arc<Mutex<Recorded>>) {
    while let Ok(mut stream) = accept.accept_typed().await {
        let state = state.clone();
        tokio::spawn(async move {
            match *stream.typ() {
                AUTH => {
                    let req = read_json(&mut stream).await;
                    let token = req["Extra"]["AuthToken"].as_str().unwrap_or_default();
                    state.lock().unwrap().authtokens.push(token.to_owned());
                    let resp = if token == TOKEN {
                        json!({"Version": "3", "ClientId": "mock-client", "Extra": {}})
                    } else {
                        json!({"Error": "unknown authtoken"})
                    };
                    write_json(&mut stream, &resp).await;
                }
                BIND => {
                    let request = read_json(&mut stream).await;
                    let opts = &request["Opts"];
                    if opts["Domain"] == "refused.internal" {
                        let resp = json!({"Error": "refused.internal is taken"});
                        return write_json(&mut stream, &resp).await;
                    }
                    let proto = request["Proto"].as_str().unwrap_or_default();
                    let url = match proto {
                        "tcp" => format!("tcp://{}", opts["Addr"].as_str().unwrap_or_default()),
                        _ => format!("{proto}://{}", opts["Domain"].as_str().unwrap_or_default()),
                    };
                    let id = {
                        let mut s = state.lock().unwrap();
                        let id = format!("ep_{}", s.binds.len());
                        s.binds.push(Bound {
                            id: id.clone(),
                            request: request.clone(),
                        });
                        id
                    };
                    let resp = json!({
                        "Id": id, "URL": url, "Proto": proto,
                        "Opts": opts, "Extra": {"Token": ""},
                    });
                    write_json(&mut stream, &resp).await;
                }
                UNBIND => {
                    let req = read_json(&mut stream).await;
                    let id = req["Id"].as_str().unwrap_or_default().to_owned();
                    state.lock().unwrap().unbinds.push(id);
                    write_json(&mut stream, &json!({})).await;
                }
                HEARTBEAT => {
                    let mut beat = [0u8; 4];
                    while stream.read_exact(&mut beat).await.is_ok() {
                        state.lock().unwrap().heartbeats += 1;
                        if stream.write_all(&beat).await.is_err() {
                            break;
                        }
                    }
                }
                other => panic!("the agent opened a stream of type {other}"),
            }
        });
    }
}

/// Reads one JSON value: the SDK writes its request and waits for the answer
/// without closing its side.
async fn read_json(stream: &mut TypedStream) -> Value {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the stream ended inside a request");
        buf.extend_from_slice(&chunk[..n]);
        match serde_json::from_slice::<Value>(&buf) {
            Ok(value) => return value,
            Err(e) if e.is_eof() => continue,
            Err(e) => panic!("not JSON ({e}): {}", String::from_utf8_lossy(&buf)),
        }
    }
}

/// Writes the answer and closes the stream: the SDK reads an answer to its end.
async fn write_json(stream: &mut TypedStream, value: &Value) {
    stream
        .write_all(value.to_string().as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
}

// === impl Echo ===

/// An upstream on the namespace's loopback that sends back what it receives.
struct Echo {
    port: u16,
    _process: KillOnDrop,
}

impl Echo {
    fn start(ns: &Netns) -> Echo {
        const ECHO: &str = "\
import socket, threading
def echo(c):
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
    c.close()
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
";
        let mut cmd = ns.command("python3");
        cmd.args(["-c", ECHO]);
        let (process, line) = start_until(cmd, "the echo upstream", |_| true);
        let port = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
        Echo {
            port,
            _process: process,
        }
    }
}
