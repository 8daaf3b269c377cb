//! `ngrok-sdk-agent`: the hosted service's Rust SDK (the `ngrok` crate, unchanged)
//! as a real agent for innergate's tunnel end-to-end tests. It is configured only
//! with what a user of the SDK would give it to reach innergate instead of the
//! hosted service: a server address, a CA and an authtoken.
//!
//! Contract with the tests (the Python agent in `scripts/sdk/python_agent.py`
//! keeps the same one):
//!
//! - stdout: one JSON line `{"id", "url", "proto"}` per endpoint once all are
//!   bound, then `READY`; `CLOSED` after the session was closed on request.
//! - It runs until SIGTERM, SIGINT or EOF on stdin (so it dies with a test that
//!   holds its stdin), then closes the session and exits 0.
//! - Connect, auth or bind refused or timed out: a message on stderr, exit 2
//!   (clap's exit code for bad usage is 2 as well).
//! - `RUST_LOG=ngrok=debug` shows the SDK's own log on stderr.

mod spec;

use std::{
    error::Error as StdError,
    fmt::Write as _,
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use bytes::Bytes;
use clap::Parser;
use futures::future::select_all;
use ngrok::{
    config::{ForwarderBuilder, Scheme},
    forwarder::Forwarder,
    prelude::{EndpointInfo, TunnelInfo},
    Session,
};
use spec::{EndpointSpec, Proto};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::oneshot,
    task::JoinHandle,
    time::timeout,
};

/// Exit status for every failure to connect, authenticate or bind.
const EXIT_REFUSED: u8 = 2;

/// Command line of the agent.
#[derive(Debug, Parser)]
#[command(
    name = "ngrok-sdk-agent",
    about = "The ngrok Rust SDK as a test agent for innergate's tunnel listener"
)]
struct Args {
    /// The tunnel listener to dial (the SDK's `server_addr`).
    #[arg(long, value_name = "HOST:PORT")]
    server_addr: String,
    /// PEM file with the CA that signed the tunnel listener's certificate (`ca_cert`).
    #[arg(long, value_name = "FILE")]
    ca_cert: PathBuf,
    /// An innergate authtoken.
    #[arg(long, env = "NGROK_AUTHTOKEN", hide_env_values = true)]
    authtoken: String,
    /// PROTO,URL,FORWARD[,internal][,pool]; PROTO is http, https, tcp or tls, e.g.
    /// `https,https://app.internal,http://127.0.0.1:9000`. Repeatable.
    #[arg(long = "endpoint", value_name = "SPEC", required = true)]
    endpoints: Vec<EndpointSpec>,
    /// How often the SDK sends a heartbeat (SDK default: 10 s).
    #[arg(long, value_name = "MS")]
    heartbeat_interval_ms: Option<u64>,
    /// How long the SDK waits for a heartbeat's answer before it reconnects.
    #[arg(long, value_name = "MS")]
    heartbeat_tolerance_ms: Option<u64>,
    /// Bound on connecting (TCP, TLS, Auth) and on each Bind.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout_secs: u64,
    /// Do not stop at EOF on stdin (for callers that start it with stdin closed).
    #[arg(long)]
    ignore_stdin: bool,
}

/// A bound endpoint whatever its kind: the forwarders of http, tcp and tls
/// endpoints are different types.
trait Bound: TunnelInfo + EndpointInfo + Send {
    /// The task forwarding the endpoint's connections; it ends when the server
    /// stops the endpoint.
    fn forwarding(&mut self) -> &mut JoinHandle<Result<(), Box<dyn StdError + Send + Sync>>>;
}

impl<T: TunnelInfo + EndpointInfo + Send> Bound for Forwarder<T> {
    fn forwarding(&mut self) -> &mut JoinHandle<Result<(), Box<dyn StdError + Send + Sync>>> {
        self.join()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // The SDK builds its TLS configs from the process-wide default provider. A
    // workspace-wide build may unify rustls features so that both ring and
    // aws-lc-rs are on, and then rustls refuses to pick one by itself.
    let _ = rustls::crypto::ring::default_provider().install_default();

    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ngrok-sdk-agent: {message}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let limit = Duration::from_secs(args.timeout_secs);
    let ca = std::fs::read(&args.ca_cert)
        .map_err(|e| format!("reading --ca-cert {}: {e}", args.ca_cert.display()))?;

    let mut builder = Session::builder();
    builder
        .authtoken(args.authtoken)
        .server_addr(&args.server_addr)
        .map_err(|e| chain("--server-addr", &e))?
        .ca_cert(Bytes::from(ca));
    if let Some(ms) = args.heartbeat_interval_ms {
        builder
            .heartbeat_interval(Duration::from_millis(ms))
            .map_err(|e| chain("--heartbeat-interval-ms", &e))?;
    }
    if let Some(ms) = args.heartbeat_tolerance_ms {
        builder
            .heartbeat_tolerance(Duration::from_millis(ms))
            .map_err(|e| chain("--heartbeat-tolerance-ms", &e))?;
    }

    let context = format!("connecting to {}", args.server_addr);
    let mut session = timeout(limit, builder.connect())
        .await
        .map_err(|_| format!("{context}: timed out after {limit:?}"))?
        .map_err(|e| chain(&context, &e))?;

    let mut bound = Vec::with_capacity(args.endpoints.len());
    for spec in &args.endpoints {
        let context = format!("binding {} endpoint {}", spec.proto, spec.host);
        let endpoint = timeout(limit, bind(&session, spec))
            .await
            .map_err(|_| format!("{context}: timed out after {limit:?}"))?
            .map_err(|e| chain(&context, &*e))?;
        bound.push(endpoint);
    }

    let mut out = std::io::stdout().lock();
    for endpoint in &bound {
        let line = serde_json::json!({
            "id": endpoint.id(),
            "url": endpoint.url(),
            "proto": endpoint.proto(),
        });
        writeln!(out, "{line}").and_then(|()| out.flush()).ok();
    }
    writeln!(out, "READY").and_then(|()| out.flush()).ok();
    drop(out);

    wait_for_stop(&mut bound, args.ignore_stdin).await?;

    session
        .close()
        .await
        .map_err(|e| chain("closing the session", &e))?;
    println!("CLOSED");
    Ok(())
}

/// Binds one endpoint and starts forwarding its connections to `spec.forward`.
async fn bind(
    session: &Session,
    spec: &EndpointSpec,
) -> Result<Box<dyn Bound>, Box<dyn StdError + Send + Sync>> {
    let binding = spec.internal.then_some("internal");
    let forward = spec.forward.clone();
    Ok(match spec.proto {
        Proto::Http | Proto::Https => {
            let mut b = session.http_endpoint();
            b.scheme(if spec.proto == Proto::Http {
                Scheme::HTTP
            } else {
                Scheme::HTTPS
            })
            .domain(&spec.host)
            .pooling_enabled(spec.pool);
            if let Some(binding) = binding {
                b.binding(binding);
            }
            Box::new(b.listen_and_forward(forward).await?)
        }
        Proto::Tcp => {
            let mut b = session.tcp_endpoint();
            b.remote_addr(spec.remote_addr()).pooling_enabled(spec.pool);
            if let Some(binding) = binding {
                b.binding(binding);
            }
            Box::new(b.listen_and_forward(forward).await?)
        }
        Proto::Tls => {
            // No `termination(...)`: the endpoint is TLS passthrough, so the SDK's
            // forwarder hands a `tls://` upstream the client's bytes unchanged
            // (provided the server's proxy header says proto "tls").
            let mut b = session.tls_endpoint();
            b.domain(&spec.host).pooling_enabled(spec.pool);
            if let Some(binding) = binding {
                b.binding(binding);
            }
            Box::new(b.listen_and_forward(forward).await?)
        }
    })
}

/// Waits for SIGTERM, SIGINT or EOF on stdin. Endpoints the server stops on its
/// own are reported on stderr; the agent keeps the others.
async fn wait_for_stop(bound: &mut [Box<dyn Bound>], ignore_stdin: bool) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let stdin_eof = async {
        if ignore_stdin {
            return std::future::pending().await;
        }
        // A plain thread, not tokio's stdin: tokio's blocking read cannot be
        // cancelled and would hold up the runtime's shutdown after a signal.
        let (eof_tx, eof_rx) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            // A read error (stdin closed outright) counts as EOF.
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = eof_tx.send(());
        });
        let _ = eof_rx.await;
    };
    tokio::pin!(stdin_eof);

    let mut live: Vec<&mut Box<dyn Bound>> = bound.iter_mut().collect();
    loop {
        let any_stopped = async {
            if live.is_empty() {
                std::future::pending::<()>().await;
            }
            let ends = live.iter_mut().map(|b| b.forwarding());
            let (result, index, _) = select_all(ends).await;
            let b = &live[index];
            eprintln!(
                "ngrok-sdk-agent: endpoint {} ({}) stopped forwarding: {result:?}",
                b.id(),
                b.url()
            );
            index
        };
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            () = &mut stdin_eof => return Ok(()),
            index = any_stopped => {
                live.swap_remove(index);
            }
        }
    }
}

/// `context: error: cause: cause` on one line, since the SDK's errors keep the interesting
/// part (the server's message, the OS error) in their sources.
fn chain(context: &str, error: &(dyn StdError + 'static)) -> String {
    let mut message = format!("{context}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    // The SDK's rpc errors put the server's message on a line of its own; keep the
    // report on one line.
    message.replace('\n', " ")
}
