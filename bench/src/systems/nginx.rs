//! nginx as the reference reverse proxy: `proxy_pass` with an upstream keep-alive
//! pool, TLS termination, and the stream module for tcp and tls passthrough
//! (`ssl_preread`).

use std::path::Path;

use anyhow::Result;

use super::{hosts, Context, Listeners};
use crate::host::{pinned_command, Process};

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    /// The master process (its workers are its children).
    pub process: Process,
    /// Where it serves.
    pub listen: Listeners,
}

/// The stream module's shared object in Debian (package libnginx-mod-stream).
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Starts nginx with every listener of [`Listeners`].
pub fn start(cx: &Context) -> Result<Nginx> {
    let listen = Listeners::free()?;
    let dir = cx.dir.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("nginx.conf");
    std::fs::write(&config, config_text(cx, &dir, &listen))?;
    let mut command = pinned_command(Path::new("nginx"), cx.cpus);
    command.arg("-p").arg(&dir).arg("-c").arg(&config);
    let mut process = Process::start("nginx", command, &dir.join("log"))?;
    for addr in [listen.http, listen.https, listen.tcp, listen.tls] {
        process.wait_for_port(addr)?;
    }
    Ok(Nginx { process, listen })
}

fn config_text(cx: &Context, dir: &Path, l: &Listeners) -> String {
    let b = cx.backend;
    let stream_module = if Path::new(STREAM_MODULE).exists() {
        format!("load_module {STREAM_MODULE};")
    } else {
        String::new()
    };
    format!(
        r#"# Written by innergate-bench.
{stream_module}
worker_processes {workers};
worker_rlimit_nofile 65536;
daemon off;
pid {dir}/nginx.pid;
error_log stderr error;
events {{ worker_connections 30000; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  # Keep 64 KiB answers in memory, as innergate and HAProxy do.
  proxy_buffer_size 16k;
  proxy_buffers 8 16k;
  upstream backend {{ server {http}; keepalive 64; keepalive_requests 100000000; }}
  server {{
    listen {lh} reuseport;
    listen {ls} ssl reuseport;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
stream {{
  # The same buffer innergate's copy loop grows to.
  proxy_buffer_size 1m;
  proxy_half_close on;
  server {{ listen {lt} reuseport; proxy_pass {sink}; }}
  map $ssl_preread_server_name $tls_upstream {{ {bulk} {tls_sink}; default 127.0.0.1:1; }}
  server {{ listen {lp} reuseport; ssl_preread on; proxy_pass $tls_upstream; }}
}}
"#,
        workers = cx.workers,
        dir = dir.display(),
        http = b.http,
        lh = l.http,
        ls = l.https,
        lt = l.tcp,
        lp = l.tls,
        cert = cx.certs.cert.display(),
        key = cx.certs.key.display(),
        sink = b.sink,
        tls_sink = b.tls_sink,
        bulk = hosts::BULK,
    )
}

/// nginx as the static backend (`--backend nginx`): files of 100 B, 4 KiB, 16 KiB and
/// 64 KiB at `/100`, `/4096`, `/16384`, `/65536`, served from memory-mapped pages
/// with sendfile, on the load CPUs.
pub fn start_backend(
    dir: &Path,
    workers: usize,
    cpus: Option<&crate::host::CpuSet>,
) -> Result<(Process, std::net::SocketAddr)> {
    let dir = dir.join("nginx-backend");
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    for size in [100usize, 4096, 16384, 65536] {
        std::fs::write(www.join(size.to_string()), vec![b'x'; size])?;
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], crate::host::free_port()?));
    let config = dir.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            r#"# Written by innergate-bench: the static backend.
worker_processes {workers};
worker_rlimit_nofile 65536;
daemon off;
pid {dir}/nginx.pid;
error_log stderr error;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  default_type application/octet-stream;
  server {{ listen {addr}; root {www}; }}
}}
"#,
            dir = dir.display(),
            www = www.display(),
        ),
    )?;
    let mut command = pinned_command(Path::new("nginx"), cpus);
    command.arg("-p").arg(&dir).arg("-c").arg(&config);
    let mut process = Process::start("nginx backend", command, &dir.join("log"))?;
    process.wait_for_port(addr)?;
    Ok((process, addr))
}
