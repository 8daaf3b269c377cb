//! HAProxy as the second reference: http mode with connection reuse, TLS
//! termination, tcp mode with splice, and tls passthrough by `req.ssl_sni`.

use std::path::Path;

use anyhow::Result;

use super::{hosts, Context, Listeners};
use crate::host::{pinned_command, Process};

/// A running HAProxy.
#[derive(Debug)]
pub struct Haproxy {
    /// The process (threads, no workers).
    pub process: Process,
    /// Where it serves.
    pub listen: Listeners,
    /// The most connections it accepts (bounded by the open-file limit).
    pub maxconn: usize,
}

/// HAProxy's connection limit under this process's open-file limit: it reserves two
/// descriptors per connection, two per splice pipe (a quarter as many pipes as
/// connections) and some for itself, and refuses to start when they do not fit.
fn maxconn() -> usize {
    (crate::host::file_limit() as usize).saturating_sub(500) * 2 / 5
}

/// Starts HAProxy with every listener of [`Listeners`].
pub fn start(cx: &Context) -> Result<Haproxy> {
    let listen = Listeners::free()?;
    let dir = cx.dir.join("haproxy");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, config_text(cx, &listen))?;
    let mut command = pinned_command(Path::new("haproxy"), cx.cpus);
    command.arg("-db").arg("-f").arg(&config);
    let mut process = Process::start("haproxy", command, &dir.join("log"))?;
    for addr in [listen.http, listen.https, listen.tcp, listen.tls] {
        process.wait_for_port(addr)?;
    }
    Ok(Haproxy {
        process,
        listen,
        maxconn: maxconn(),
    })
}

fn config_text(cx: &Context, l: &Listeners) -> String {
    let b = cx.backend;
    format!(
        r#"# Written by innergate-bench.
global
  nbthread {workers}
  # As many connections as the open-file limit allows (see maxconn()).
  ulimit-n {ulimit}
  maxconn {maxconn}
  tune.bufsize 16384
  tune.pipesize 1048576
  ssl-server-verify none

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 10s
  timeout tunnel 1h
  maxconn {maxconn}
  http-reuse always

frontend http
  bind {lh}
  bind {ls} ssl crt {pem} alpn http/1.1
  option forwardfor
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  default_backend app

backend app
  server app {http}

frontend tcp
  mode tcp
  bind {lt}
  option splice-auto
  default_backend sink

backend sink
  mode tcp
  option splice-auto
  server sink {sink}

frontend tls
  mode tcp
  bind {lp}
  option splice-auto
  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req.ssl_hello_type 1 }}
  use_backend tls_sink if {{ req.ssl_sni -i {bulk} }}

backend tls_sink
  mode tcp
  option splice-auto
  server sink {tls_sink}
"#,
        workers = cx.workers,
        ulimit = crate::host::file_limit(),
        maxconn = maxconn(),
        lh = l.http,
        ls = l.https,
        lt = l.tcp,
        lp = l.tls,
        pem = cx.certs.combined.display(),
        http = b.http,
        sink = b.sink,
        tls_sink = b.tls_sink,
        bulk = hosts::BULK,
    )
}
