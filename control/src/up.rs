//! `innergate up`: control and a data plane on one machine with one command, an
//! embedded store, a default account and the seed quickstart ready to curl.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process};
use std::time::{Duration, Instant};

use crate::core::{Command, CoreHandle};
use crate::endpoint::CreateEndpoint;
use crate::serve::{self, ServeOptions};

/// Settings of `innergate up`.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The data directory.
    pub data: PathBuf,
    /// Where the API listens.
    pub api: SocketAddr,
    /// The address public listeners bind.
    pub bind: IpAddr,
    /// The port of the seed quickstart's public endpoint.
    pub http_port: u16,
    /// Data plane workers (default: one per core).
    pub workers: Option<usize>,
    /// How long an endpoint an agent holds lives without renewal.
    pub lease_ttl: Duration,
    /// The port of the tunnel listener agents dial.
    pub tunnel_port: u16,
}

impl UpOptions {
    /// The tunnel listener as local agents reach it.
    fn tunnel_addr(&self) -> SocketAddr {
        let host = if self.bind.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.bind
        };
        SocketAddr::new(host, self.tunnel_port)
    }
}

/// The seed quickstart: an internal endpoint that answers, a public one that forwards.
const SEED_INTERNAL: &str = "https://example.internal";
const SEED_INTERNAL_POLICY: &str = "on_http_request:
  - actions:
      - type: custom-response
        config:
          status_code: 200
          body: Hello world!
";

fn seed_public_policy() -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: forward-internal\n        config:\n          url: {SEED_INTERNAL}\n"
    )
}

/// Runs until SIGINT/SIGTERM, then stops the data plane and exits.
pub fn run(opts: UpOptions) -> Result<(), String> {
    std::fs::create_dir_all(&opts.data).map_err(|e| format!("{}: {e}", opts.data.display()))?;
    let data = opts.data.canonicalize().map_err(|e| e.to_string())?;
    let socket = data.join("dataplane.sock");
    let mut dataplane = start_dataplane(&opts, &data, &socket)?;
    let serve_opts = ServeOptions {
        api: opts.api,
        data: data.clone(),
        dataplane_socket: Some(socket),
        lease_ttl: opts.lease_ttl,
        tunnel_url: Some(opts.tunnel_addr().to_string()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let http_port = opts.http_port;
    let tunnel = opts.tunnel_addr();
    let result = runtime.block_on(serve::run(
        serve_opts,
        move |addr, core| {
            std::thread::spawn(move || {
                if let Err(e) = welcome(&data, addr, http_port, tunnel, &core) {
                    eprintln!("innergate up: {e}");
                }
            });
        },
        serve::shutdown_signal(),
    ));
    eprintln!("innergate up: stopping");
    stop(&mut dataplane);
    result
}

fn start_dataplane(opts: &UpOptions, data: &Path, socket: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = exe.with_file_name("innergate-dataplane");
    if !binary.exists() {
        return Err(format!(
            "{} not found next to innergate; build both with `cargo build --release`",
            binary.display()
        ));
    }
    let (cert, key) = development_certificate(data)?;
    let mut command = Process::new(&binary);
    command
        .arg("--control-socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(data.join("dataplane"))
        .arg("--bind")
        .arg(opts.bind.to_string())
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key);
    let (tunnel_cert, tunnel_key) = tunnel_certificate(data, opts.tunnel_addr().ip())?;
    command
        .arg("--tunnel")
        .arg(SocketAddr::new(opts.bind, opts.tunnel_port).to_string())
        .arg("--tunnel-cert")
        .arg(tunnel_cert)
        .arg("--tunnel-key")
        .arg(tunnel_key);
    if let Some(workers) = opts.workers {
        command.arg("--workers").arg(workers.to_string());
    }
    // If `up` dies without stopping it (kill -9), the data plane is told by the
    // kernel rather than left running alone.
    // SAFETY: prctl(2) in the child between fork and exec touches no shared state.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the data plane exited at start: {status}"));
        }
        if Instant::now() > deadline {
            stop(&mut child);
            return Err("the data plane did not open its control socket".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// A self-signed certificate for `localhost` and `*.localhost`, made on first start
/// and kept in `DATA/tls/`, so https endpoints work out of the box. Clients must be
/// told to trust it (`curl -k`, or `--cacert DATA/tls/dev.crt` for `https://localhost`;
/// strict clients do not accept the wildcard over a one-label name).
fn development_certificate(data: &Path) -> Result<(PathBuf, PathBuf), String> {
    let dir = data.join("tls");
    let (cert, key) = (dir.join("dev.crt"), dir.join("dev.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let names = vec!["localhost".to_string(), "*.localhost".to_string()];
    let pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "innergate development certificate",
    );
    let signed = params.self_signed(&pair).map_err(|e| e.to_string())?;
    std::fs::write(&cert, signed.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key, pair.serialize_pem()).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "innergate up: made a self-signed development certificate in {}",
        dir.display()
    );
    Ok((cert, key))
}

/// A small CA and a tunnel certificate it signed for `ip`, `127.0.0.1` and
/// `localhost`, made on first start in `DATA/tls/`: agents trust the CA
/// (`--tunnel-ca`, the SDKs' `ca_cert`/`root_cas`). A CA and a leaf, not one
/// self-signed certificate: rustls refuses a CA certificate as a server's.
fn tunnel_certificate(data: &Path, ip: IpAddr) -> Result<(PathBuf, PathBuf), String> {
    let dir = data.join("tls");
    let (ca_file, cert, key) = (
        dir.join("tunnel-ca.crt"),
        dir.join("tunnel.crt"),
        dir.join("tunnel.key"),
    );
    if ca_file.exists() && cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "innergate tunnel CA");
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    let leaf_key = rcgen::KeyPair::generate().map_err(err)?;
    let leaf = rcgen::CertificateParams::new(names)
        .map_err(err)?
        .signed_by(&leaf_key, &issuer)
        .map_err(err)?;
    std::fs::write(&ca_file, ca.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&cert, leaf.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key, leaf_key.serialize_pem()).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    Ok((cert, key))
}

fn stop(child: &mut Child) {
    // SAFETY: kill(2) with a pid we own; a failure only means it already exited.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// On first start: creates the default account (its key kept in `DATA/api-key`, owner
/// only) and the seed endpoints. Every start: prints how to use them.
fn welcome(
    data: &Path,
    api: SocketAddr,
    http_port: u16,
    tunnel: SocketAddr,
    core: &CoreHandle,
) -> Result<(), String> {
    let key_file = data.join("api-key");
    let key = match std::fs::read_to_string(&key_file) {
        Ok(key) => key.trim().to_string(),
        Err(_) => {
            let (account, key) = core
                .call_blocking(|reply| Command::CreateAccount("default".into(), reply))
                .and_then(|r| r)
                .map_err(|e| e.to_string())?;
            std::fs::write(&key_file, format!("{key}\n")).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            let public = format!("http://hello.localhost:{http_port}");
            for (url, policy) in [
                (SEED_INTERNAL.to_string(), SEED_INTERNAL_POLICY.to_string()),
                (public, seed_public_policy()),
            ] {
                let body = CreateEndpoint {
                    url: url.clone(),
                    traffic_policy: Some(policy),
                    description: Some("seed quickstart".into()),
                    ..Default::default()
                };
                let created = core
                    .call_blocking(|reply| Command::Create(account.id.clone(), body, reply))
                    .and_then(|r| r);
                if let Err(e) = created {
                    eprintln!("innergate up: could not create {url}: {e}");
                }
            }
            key
        }
    };
    println!(
        "\ninnergate is up.\n\n  API:      http://{api}\n  API key:  {key}   (also in {})\n\nTry the seed quickstart:\n\n  curl http://hello.localhost:{http_port}/\n\nManage endpoints with the CLI:\n\n  export INNERGATE_API_URL=http://{api}\n  export INNERGATE_API_KEY={key}\n  innergate api endpoints list\n\nPut a local service behind the gateway over a tunnel:\n\n  innergate http 3000 --url https://app.internal --tunnel-ca {}\n\n  tunnel:   {tunnel}   (agents and the hosted service's SDKs: server_addr, CA above)\n\nCtrl-C stops control and the data plane.\n",
        key_file.display(),
        data.join("tls").join("tunnel-ca.crt").display()
    );
    Ok(())
}
