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

use ngrok::config::ForwarderBuilder;
use ngrok::session::ConnectError;
use ngrok::tunnel::{EndpointInfo, TunnelInfo};

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
}

/// The longest wait between two attempts to reach the gateway.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Dials the gateway until it answers (TCP and TLS), with a bounded backoff.
async fn dial(
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Box<dyn ngrok::session::IoStream>, ConnectError> {
    let mut wait = Duration::from_millis(50);
    loop {
        match ngrok::session::default_connect(host.clone(), port, tls.clone(), None).await {
            Ok(io) => return Ok(io),
            // A certificate the agent does not trust will not get better by waiting.
            Err(e @ ConnectError::Tls(_)) => return Err(e),
            Err(e) => {
                log::warn!("cannot reach the gateway at {host}:{port}: {e}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Runs the agent until SIGINT or SIGTERM (listened for from the start, so that a
/// signal at any moment counts); then closes the session, which takes the endpoint
/// offline at once.
pub async fn run(agent: TunnelAgent, bound: impl FnOnce(&str, &str)) -> Result<(), String> {
    let mut stop = crate::agent::StopSignals::install()?;
    serve(agent, bound, &mut stop).await
}

async fn serve(
    agent: TunnelAgent,
    bound: impl FnOnce(&str, &str),
    stop: &mut crate::agent::StopSignals,
) -> Result<(), String> {
    let mut builder = ngrok::Session::builder();
    builder
        .authtoken(agent.authtoken.clone())
        .server_addr(agent.server_addr.clone())
        .map_err(|e| format!("--server-addr {}: {e}", agent.server_addr))?
        .client_info("innergate", env!("CARGO_PKG_VERSION"), None::<String>)
        .connector(|host: String, port: u16, tls, _err| dial(host, port, tls));
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
    let connect = builder.connect();
    let mut session = tokio::select! {
        s = connect => s.map_err(|e| {
            format!("cannot open a tunnel session to {}: {}", agent.server_addr, chain(&e))
        })?,
        () = stop.recv() => return Ok(()),
    };
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
    // The forwarder relays streams for as long as it is held.
    let (id, url, forwarder): (String, String, Box<dyn std::any::Any + Send>) =
        match agent.proto.as_str() {
            "http" => {
                let mut b = session.http_endpoint();
                let scheme = if endpoint.scheme() == "https" {
                    ngrok::config::Scheme::HTTPS
                } else {
                    ngrok::config::Scheme::HTTP
                };
                b.scheme(scheme)
                    .domain(host_port(&endpoint))
                    .binding(binding)
                    .pooling_enabled(agent.pooling_enabled)
                    .forwards_to(agent.upstream.clone());
                if !policy.is_empty() {
                    b.traffic_policy(policy);
                }
                let f = b.listen_and_forward(upstream).await.map_err(bind_error)?;
                (f.id().to_string(), f.url().to_string(), Box::new(f))
            }
            "tcp" => {
                let mut b = session.tcp_endpoint();
                b.remote_addr(host_port(&endpoint))
                    .binding(binding)
                    .pooling_enabled(agent.pooling_enabled)
                    .forwards_to(agent.upstream.clone());
                if !policy.is_empty() {
                    b.traffic_policy(policy);
                }
                let f = b.listen_and_forward(upstream).await.map_err(bind_error)?;
                (f.id().to_string(), f.url().to_string(), Box::new(f))
            }
            "tls" => {
                let mut b = session.tls_endpoint();
                b.domain(host_port(&endpoint))
                    .binding(binding)
                    .pooling_enabled(agent.pooling_enabled)
                    .forwards_to(agent.upstream.clone());
                if !policy.is_empty() {
                    b.traffic_policy(policy);
                }
                let f = b.listen_and_forward(upstream).await.map_err(bind_error)?;
                (f.id().to_string(), f.url().to_string(), Box::new(f))
            }
            other => return Err(format!("unknown agent protocol {other}")),
        };
    bound(&id, &url);
    stop.recv().await;
    drop(forwarder);
    let _ = session.close().await;
    Ok(())
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
