//! Agent mode over a tunnel: `innergate http|tcp|tls UPSTREAM --url URL` dials the
//! gateway's tunnel listener, binds its endpoint in the hosted service's own agent
//! protocol (innergate's agent is the hosted service's Rust SDK, pointed at
//! innergate), and relays each stream the gateway opens to UPSTREAM, which is
//! resolved here, on the agent's machine.
//!
//! The SDK reconnects by itself after a lost session and rebinds the endpoint under
//! the same id; the connector below retries the TCP and TLS part with a bounded
//! backoff so that a gateway that restarts is found again within a second or two.

use std::sync::Arc;
use std::time::Duration;

use ngrok::config::{ForwarderBuilder, TunnelBuilder};
use ngrok::session::ConnectError;
use ngrok::tunnel::{EndpointInfo, TunnelInfo};

mod coalesce;
mod relay;

/// What the agent binds and where it forwards.
#[derive(Debug, Clone)]
pub struct TunnelAgent {
    /// `http`, `tcp` or `tls`.
    pub proto: String,
    /// The endpoint URL (`https://app.internal`, `tcp://db.internal:5432`, …).
    pub url: String,
    /// `public` or `internal` (default: from the URL).
    pub binding: Option<String>,
    pub pooling_enabled: bool,
    pub traffic_policy: Option<String>,
    /// The local service, as a URL (`http://127.0.0.1:8080`, `tcp://…`, `tls://…`).
    pub upstream: String,
    /// The tunnel listener, `host:port`.
    pub server_addr: String,
    /// An authtoken, or an API key of the account.
    pub authtoken: String,
    /// A CA (PEM) to trust for the tunnel listener instead of the system roots.
    pub ca: Option<Vec<u8>>,
    /// At most this many sessions (default: one per data plane worker).
    pub sessions: Option<usize>,
}

/// How often the agent sends its heartbeats.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to reach the gateway.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Dials the gateway until it answers (TCP and TLS), with a bounded backoff. The first
/// connect gives up on a TLS error (a certificate the agent does not trust will not
/// get better by waiting); a reconnect (`lost` is the reason) retries anything, since
/// a gateway handing its port over in an upgrade can reset a handshake, and the SDK's
/// own backoff between failed reconnects grows far beyond the liveness bound.
async fn dial(
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    lost: bool,
) -> Result<Box<dyn ngrok::session::IoStream>, ConnectError> {
    let mut wait = Duration::from_millis(50);
    loop {
        match dial_once(&host, port, tls.clone()).await {
            Ok(io) => return Ok(io),
            Err(e @ ConnectError::Tls(_)) if !lost => return Err(e),
            Err(e) => {
                log::warn!("cannot reach the gateway at {host}:{port}: {e}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection to the gateway: TCP with Nagle off (with Nagle, the gateway's
/// delayed ACK would hold a small response that leaves in two pieces for 40 ms),
/// then TLS, then the coalescing of the SDK's frames into few writes.
async fn dial_once(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Box<dyn ngrok::session::IoStream>, ConnectError> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(ConnectError::Tcp)?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ConnectError::Tcp(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(ConnectError::Tls)?;
    Ok(Box::new(coalesce::Coalesced::new(stream)))
}

/// Runs the agent until SIGINT or SIGTERM (listened for from the start, so that a
/// signal at any moment counts), or until the gateway's API tells it to stop; then
/// closes the session, which takes the endpoint offline at once. A restart command
/// starts it over: new sessions, the endpoint bound again. `bound` hears of every bind.
pub async fn run(agent: TunnelAgent, mut bound: impl FnMut(&str, &str)) -> Result<(), String> {
    let mut stop = crate::agent::StopSignals::install()?;
    // One group for the agent's life: the endpoint its sessions bind is one endpoint,
    // across restarts too.
    let group = format!("{AGENT_GROUP}{:016x}", rand_u64());
    let mut previous = Vec::new();
    loop {
        let run = Run {
            agent: &agent,
            group: &group,
            previous,
        };
        match run.serve(&mut bound, &mut stop).await? {
            (Ended::Stopped, sessions) => return close(sessions).await,
            (Ended::Restart, sessions) => {
                log::info!("restarting, as the gateway asked");
                previous = sessions;
            }
        }
    }
}

/// The agent's sessions, each with what relays its endpoint's streams.
type Sessions = Vec<(ngrok::Session, Box<dyn std::any::Any + Send>)>;

/// One run of the agent, from its first session to a stop or a restart.
struct Run<'a> {
    agent: &'a TunnelAgent,
    /// The metadata that makes every session of this agent bind one endpoint.
    group: &'a str,
    /// The sessions of the run before a restart: closed once this run's first session
    /// holds the endpoint (make before break, so that it never goes offline).
    previous: Sessions,
}

/// How one run of the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// A signal, or a stop command: the agent exits.
    Stopped,
    /// A restart command.
    Restart,
}

/// How long a command's answer gets to leave before the sessions close: the SDK
/// writes it once the handler returned.
const ANSWER_GRACE: Duration = Duration::from_millis(250);

/// What ends a run: a signal, or a command from the gateway (the SDK's handlers send
/// it here).
struct Stops<'a> {
    signals: &'a mut crate::agent::StopSignals,
    commands: tokio::sync::mpsc::UnboundedReceiver<Ended>,
}

impl Stops<'_> {
    async fn next(&mut self) -> Ended {
        tokio::select! {
            () = self.signals.recv() => Ended::Stopped,
            Some(command) = self.commands.recv() => {
                tokio::time::sleep(ANSWER_GRACE).await;
                command
            }
        }
    }
}

/// Hands a command to the run (which acts on it once the answer left).
fn accept_command(
    run: &tokio::sync::mpsc::UnboundedSender<Ended>,
    ended: Ended,
) -> Result<(), String> {
    let command = match ended {
        Ended::Stopped => "stop",
        Ended::Restart => "restart",
    };
    log::info!("the gateway asked this agent to {command}");
    run.send(ended)
        .map_err(|_| "the agent is stopping already".to_string())
}

impl Run<'_> {
    /// Runs until a signal or a command; returns how it ended and the sessions, still
    /// open.
    async fn serve(
        self,
        bound: &mut impl FnMut(&str, &str),
        signals: &mut crate::agent::StopSignals,
    ) -> Result<(Ended, Sessions), String> {
        let Run {
            agent,
            group,
            previous,
        } = self;
        let (commands_tx, commands) = tokio::sync::mpsc::unbounded_channel();
        let mut stop = Stops { signals, commands };
        let mut builder = ngrok::Session::builder();
        builder
            .authtoken(agent.authtoken.clone())
            .server_addr(agent.server_addr.clone())
            .map_err(|e| format!("--server-addr {}: {e}", agent.server_addr))?
            .client_info("innergate", env!("CARGO_PKG_VERSION"), None::<String>)
            // The SDK accepts the gateway's own heartbeat stream only between reconnects:
            // while it rebinds after one, its own beats are what tells the gateway it is
            // alive, so they come often, well inside the gateway's liveness bound.
            .heartbeat_interval(HEARTBEAT)
            .map_err(|e| e.to_string())?
            .connector(|host: String, port: u16, tls, err: Option<_>| {
                dial(host, port, tls, err.is_some())
            });
        // The commands of the gateway's tunnel_sessions API.
        let stop_tx = commands_tx.clone();
        builder.handle_stop_command(move |_: ngrok::session::Stop| {
            let done = accept_command(&stop_tx, Ended::Stopped);
            async move { done }
        });
        builder.handle_restart_command(move |_: ngrok::session::Restart| {
            let done = accept_command(&commands_tx, Ended::Restart);
            async move { done }
        });
        builder.handle_update_command(|update: ngrok::session::Update| async move {
            Err(format!(
                "innergate's agent does not update itself (asked for version {:?}): install the \
             new release and restart it",
                update.version
            ))
        });
        match &agent.ca {
            Some(pem) => {
                builder.ca_cert(bytes::Bytes::from(pem.clone()));
            }
            None => {
                builder
                    .root_cas("host")
                    .map_err(|e| format!("system certificate roots: {e}"))?;
            }
        }
        let connect = connect_session(&builder, &agent.server_addr);
        let first = tokio::select! {
            s = connect => s?,
            ended = stop.next() => return Ok((ended, previous)),
        };
        let (id, url, forwarder) = bind(&first, agent, group).await?;
        close(previous).await?;
        bound(&id, &url);
        let mut sessions = vec![(first, forwarder)];
        // A session per data plane worker, so that no request of this endpoint crosses
        // threads there: the session id says which worker took it, of how many.
        let placed = placement(&sessions[0].0.id());
        if let Some((worker, workers)) = placed.filter(|_| agent.sessions != Some(1)) {
            let workers = agent.sessions.map_or(workers, |n| n.min(workers));
            let mut covered = std::collections::BTreeSet::from([worker]);
            for _ in 0..workers * 8 {
                if covered.len() >= workers {
                    break;
                }
                let session = tokio::select! {
                    s = connect_session(&builder, &agent.server_addr) => match s {
                        Ok(s) => s,
                        Err(e) => {
                            log::warn!("{e}; continuing with {} sessions", sessions.len());
                            break;
                        }
                    },
                    ended = stop.next() => return Ok((ended, sessions)),
                };
                let Some((w, _)) = placement(&session.id()) else {
                    break;
                };
                if !covered.insert(w) {
                    // A worker that already has one: the kernel spreads connections by
                    // their addresses, so another connection will land elsewhere.
                    let mut session = session;
                    let _ = session.close().await;
                    continue;
                }
                match bind(&session, agent, group).await {
                    Ok((same, _, f)) if same == id => sessions.push((session, f)),
                    Ok(_) | Err(_) => {
                        let mut session = session;
                        let _ = session.close().await;
                        break;
                    }
                }
            }
            log::info!(
                "{} tunnel sessions for {} data plane workers",
                sessions.len(),
                workers
            );
        }
        let ended = stop.next().await;
        Ok((ended, sessions))
    }
}

/// Closes every session, which takes the endpoint offline at once (unless sessions of
/// a newer run hold it).
async fn close(sessions: Sessions) -> Result<(), String> {
    for (mut session, forwarder) in sessions {
        drop(forwarder);
        let _ = session.close().await;
    }
    Ok(())
}

/// The metadata prefix that marks the sessions of one innergate agent: control binds
/// them to one endpoint.
pub const AGENT_GROUP: &str = "innergate-agent-group=";

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// The worker a session landed on and how many the data plane runs, from the session
/// id innergate's data plane gives (`ses_N_wW_ofK`); `None` from another server.
fn placement(session_id: &str) -> Option<(usize, usize)> {
    let rest = session_id.strip_prefix("ses_")?;
    let (_, rest) = rest.split_once("_w")?;
    let (w, n) = rest.split_once("_of")?;
    Some((w.parse().ok()?, n.parse().ok()?))
}

async fn connect_session(
    builder: &ngrok::session::SessionBuilder,
    server_addr: &str,
) -> Result<ngrok::Session, String> {
    builder.connect().await.map_err(|e| {
        format!(
            "cannot open a tunnel session to {server_addr}: {}",
            chain(&e)
        )
    })
}

/// Binds the agent's endpoint on `session`; its id, URL, and the relay (or the SDK's
/// forwarder) that carries its streams for as long as it is held.
async fn bind(
    session: &ngrok::Session,
    agent: &TunnelAgent,
    group: &str,
) -> Result<(String, String, Box<dyn std::any::Any + Send>), String> {
    let upstream =
        url::Url::parse(&agent.upstream).map_err(|e| format!("{}: {e}", agent.upstream))?;
    let endpoint = url::Url::parse(&agent.url).map_err(|e| format!("{}: {e}", agent.url))?;
    let host = endpoint.host_str().unwrap_or_default().to_string();
    let binding = agent.binding.clone().unwrap_or_else(|| {
        if host.ends_with(".internal") {
            "internal".into()
        } else {
            "public".into()
        }
    });
    let policy = agent.traffic_policy.clone().unwrap_or_default();
    // What every kind of endpoint takes alike, then the bind: the SDK's builders are
    // distinct types with the same methods.
    macro_rules! bind_with {
        ($builder:expr) => {{
            let mut b = $builder;
            b.binding(binding)
                .pooling_enabled(agent.pooling_enabled)
                .metadata(group)
                .forwards_to(agent.upstream.clone());
            if !policy.is_empty() {
                b.traffic_policy(policy);
            }
            let bound: (String, String, Box<dyn std::any::Any + Send>) = if relay::serves(&upstream)
            {
                let t = b.listen().await.map_err(bind_error)?;
                let (id, url) = (t.id().to_string(), t.url().to_string());
                let relay = relay::spawn(t, &upstream).map_err(|e| e.to_string())?;
                (id, url, Box::new(relay))
            } else {
                let f = b.listen_and_forward(upstream).await.map_err(bind_error)?;
                (f.id().to_string(), f.url().to_string(), Box::new(f))
            };
            bound
        }};
    }
    let address = host_port(&endpoint);
    Ok(match agent.proto.as_str() {
        "http" => {
            let scheme = if endpoint.scheme() == "https" {
                ngrok::config::Scheme::HTTPS
            } else {
                ngrok::config::Scheme::HTTP
            };
            let mut b = session.http_endpoint();
            b.scheme(scheme).domain(address);
            bind_with!(b)
        }
        "tcp" => {
            let mut b = session.tcp_endpoint();
            b.remote_addr(address);
            bind_with!(b)
        }
        "tls" => {
            let mut b = session.tls_endpoint();
            b.domain(address);
            bind_with!(b)
        }
        other => return Err(format!("unknown agent protocol {other}")),
    })
}

/// The URL's host, with its port when it has one (the gateway reads both).
fn host_port(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// An error and its causes, as one line (the gateway's own words are in the causes).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(c.to_string().trim());
        cause = c.source();
    }
    out
}

fn bind_error(e: ngrok::session::RpcError) -> String {
    use ngrok::prelude::Error as _;
    format!("the gateway refused the endpoint: {}", e.msg())
}
