//! The `innergate` binary: control process, `up`, accounts, API client, authtokens,
//! agent mode.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use innergate::authtoken::CreateAuthtoken;
use innergate::client::{
    policy_arg, show_authtokens, show_endpoint, show_page, show_tunnel_sessions, ApiClient,
};
use innergate::endpoint::{CreateEndpoint, HeldBy, UpdateEndpoint};
use innergate::serve::{self, ServeOptions};
use innergate::up::{self, UpOptions};
use innergate_table::units::parse_duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// innergate: endpoints, traffic policies and internal endpoints on your own machines.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the control process: API, store, pushes to the data plane.
    Serve {
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:4040")]
        api: SocketAddr,
        /// The data directory (embedded store).
        #[arg(long, default_value = "./innergate-data")]
        data: PathBuf,
        /// The data plane's control socket.
        #[arg(long)]
        dataplane_socket: Option<PathBuf>,
        /// How long an endpoint an agent holds lives without renewal.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        lease_ttl: Duration,
        /// The data plane's tunnel listener as agents reach it (host:port), handed to
        /// agents that ask the API (`GET /tunnel`).
        #[arg(long)]
        tunnel_url: Option<String>,
    },
    /// Run control and a data plane together, with the seed quickstart.
    Up {
        /// The data directory.
        #[arg(long, default_value = "./innergate-data")]
        data: PathBuf,
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:4040")]
        api: SocketAddr,
        /// The address public listeners bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// The port of the quickstart's public endpoint.
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
        /// Data plane workers (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// How long an endpoint an agent holds lives without renewal.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        lease_ttl: Duration,
        /// The port of the tunnel listener that agents dial.
        #[arg(long, default_value_t = 4443)]
        tunnel_port: u16,
    },
    /// Manage accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Call the Endpoints API.
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// Manage authtokens, what tunnel agents authenticate with.
    Authtokens {
        #[command(subcommand)]
        command: AuthtokensCommand,
        #[command(flatten)]
        access: ApiAccess,
    },
    /// Agent mode: put an http endpoint in front of UPSTREAM while this runs.
    Http(AgentArgs),
    /// Agent mode: put a tcp endpoint in front of UPSTREAM while this runs.
    Tcp(AgentArgs),
    /// Agent mode: put a tls endpoint in front of UPSTREAM while this runs.
    Tls(AgentArgs),
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account and print its API key (alone, on stdout).
    Create {
        /// The account's name.
        name: String,
        /// The data directory of the control process.
        #[arg(long, default_value = "./innergate-data")]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuthtokensCommand {
    /// Create an authtoken and print it (alone, on stdout): it is shown once.
    Create {
        /// Free text for people (at most 255 bytes), e.g. where it is used.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the account's authtokens, newest first (never their secrets).
    List,
    /// Revoke an authtoken: agents no longer authenticate with it.
    Revoke {
        /// The authtoken's id (`at_…`), as `list` shows it.
        id: String,
    },
}

#[derive(Debug, Args)]
struct ApiAccess {
    /// The API's base URL.
    #[arg(
        long,
        env = "INNERGATE_API_URL",
        default_value = "http://127.0.0.1:4040",
        global = true
    )]
    api_url: String,
    /// The API key.
    #[arg(long, env = "INNERGATE_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print JSON instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Endpoints.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
        #[command(flatten)]
        access: ApiAccess,
    },
    /// Live tunnel sessions of agents, and the commands they take.
    TunnelSessions {
        #[command(subcommand)]
        command: TunnelSessionsCommand,
        #[command(flatten)]
        access: ApiAccess,
    },
}

#[derive(Debug, Subcommand)]
enum TunnelSessionsCommand {
    /// List the account's tunnel sessions.
    List,
    /// Show one session.
    Get {
        /// The session's id (`ses_…`).
        id: String,
    },
    /// Tell the session's agent to stop (it exits; its endpoints go offline).
    Stop {
        /// The session's id.
        id: String,
    },
    /// Tell the session's agent to restart (new sessions, its endpoints bound again).
    Restart {
        /// The session's id.
        id: String,
    },
    /// Ask the session's agent to update itself (agents that cannot, say so).
    Update {
        /// The session's id.
        id: String,
        /// The version to update to (default: the newest).
        #[arg(long, default_value = "")]
        version: String,
        /// Accept a new major version.
        #[arg(long)]
        permit_major_version: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointsCommand {
    /// Create an endpoint.
    Create {
        #[arg(long)]
        url: String,
        /// agent or cloud (default: agent with --upstream-url, else cloud).
        #[arg(long = "type")]
        kind: Option<String>,
        /// public or internal (default: from the URL).
        #[arg(long)]
        binding: Option<String>,
        /// The policy: YAML or JSON text, or @FILE.
        #[arg(long)]
        traffic_policy: Option<String>,
        /// The upstream of an agent endpoint.
        #[arg(long)]
        upstream_url: Option<String>,
        #[arg(long)]
        pooling_enabled: bool,
        /// The largest request body in bytes (413 above; http/https only).
        #[arg(long)]
        max_request_body_bytes: Option<u64>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        metadata: Option<String>,
    },
    /// List endpoints, newest first.
    List {
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        before_id: Option<String>,
    },
    /// Show one endpoint.
    Get { id: String },
    /// Change fields of an endpoint.
    Update {
        id: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        binding: Option<String>,
        #[arg(long)]
        traffic_policy: Option<String>,
        #[arg(long)]
        upstream_url: Option<String>,
        #[arg(long)]
        pooling_enabled: Option<bool>,
        /// A new request body limit in bytes (0: none).
        #[arg(long)]
        max_request_body_bytes: Option<u64>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Delete an endpoint.
    Delete { id: String },
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The service: a port (127.0.0.1:PORT), host:port or a URL.
    upstream: String,
    /// The endpoint's URL.
    #[arg(long)]
    url: String,
    /// public or internal (default: from the URL).
    #[arg(long)]
    binding: Option<String>,
    /// A file with the endpoint's traffic policy.
    #[arg(long)]
    traffic_policy_file: Option<PathBuf>,
    #[arg(long)]
    pooling_enabled: bool,
    /// The data plane dials UPSTREAM itself (it must be reachable from there),
    /// instead of this agent relaying over a tunnel session.
    #[arg(long)]
    direct: bool,
    /// The gateway's tunnel listener (host:port); default: what the API says.
    #[arg(long, env = "INNERGATE_SERVER_ADDR")]
    server_addr: Option<String>,
    /// The authtoken the session authenticates with; default: the API key.
    #[arg(long, env = "INNERGATE_AUTHTOKEN", hide_env_values = true)]
    authtoken: Option<String>,
    /// A CA certificate (PEM) to trust for the tunnel listener instead of the system
    /// roots (for a self-signed gateway such as `innergate up`'s).
    #[arg(long)]
    tunnel_ca: Option<PathBuf>,
    /// Tunnel sessions to open at most (default: one per data plane worker, so that
    /// no request crosses threads there; 1 behaves like the hosted service's SDKs).
    #[arg(long)]
    sessions: Option<usize>,
    #[command(flatten)]
    access: ApiAccess,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match Cli::parse().command {
        Top::Serve {
            api,
            data,
            dataplane_socket,
            lease_ttl,
            tunnel_url,
        } => run_serve(ServeOptions {
            api,
            data,
            dataplane_socket,
            lease_ttl,
            tunnel_url,
        }),
        Top::Up {
            data,
            api,
            bind,
            http_port,
            workers,
            lease_ttl,
            tunnel_port,
        } => up::run(UpOptions {
            data,
            api,
            bind,
            http_port,
            workers,
            lease_ttl,
            tunnel_port,
        }),
        Top::Accounts {
            command: AccountsCommand::Create { name, data },
        } => create_account(&name, &data),
        Top::Api {
            command: ApiCommand::Endpoints { command, access },
        } => endpoints(command, &access),
        Top::Api {
            command: ApiCommand::TunnelSessions { command, access },
        } => tunnel_sessions(command, &access),
        Top::Authtokens { command, access } => authtokens(command, &access),
        Top::Http(args) => agent("http", args),
        Top::Tcp(args) => agent("tcp", args),
        Top::Tls(args) => agent("tls", args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn run_serve(opts: ServeOptions) -> Result<(), String> {
    runtime()?.block_on(serve::run(
        opts,
        |addr, _| println!("api: http://{addr}"),
        serve::shutdown_signal(),
    ))
}

fn create_account(name: &str, data: &std::path::Path) -> Result<(), String> {
    let created = match innergate::admin::create_account_remote(data, name) {
        Some(result) => {
            eprintln!("created through the running control process");
            result
        }
        None => {
            let opts = ServeOptions {
                api: "127.0.0.1:0".parse().expect("a literal address"),
                data: data.to_path_buf(),
                dataplane_socket: None,
                lease_ttl: Duration::from_secs(30),
                tunnel_url: None,
            };
            let core = serve::start_core(&opts)?;
            let result = core
                .call_blocking(|reply| innergate::core::Command::CreateAccount(name.into(), reply))
                .and_then(|r| r);
            let _ = std::fs::remove_file(innergate::admin::socket_path(data));
            result
        }
    };
    let (account, key) = created.map_err(|e| e.to_string())?;
    eprintln!(
        "account {} ({}); the key is shown once:",
        account.id, account.name
    );
    println!("{key}");
    Ok(())
}

fn client(access: &ApiAccess) -> Result<ApiClient, String> {
    let key = access
        .api_key
        .as_deref()
        .ok_or("no API key: pass --api-key or set INNERGATE_API_KEY")?;
    Ok(ApiClient::new(&access.api_url, key))
}

fn print<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("API types serialize")
        );
    } else {
        print!("{}", human(value));
    }
}

fn endpoints(command: EndpointsCommand, access: &ApiAccess) -> Result<(), String> {
    let api = client(access)?;
    let json = access.json;
    match command {
        EndpointsCommand::Create {
            url,
            kind,
            binding,
            traffic_policy,
            upstream_url,
            pooling_enabled,
            max_request_body_bytes,
            description,
            metadata,
        } => {
            let body = CreateEndpoint {
                url,
                kind,
                bindings: binding.map(|b| vec![b]),
                traffic_policy: traffic_policy.as_deref().map(policy_arg).transpose()?,
                upstream_url,
                held_by: None,
                pooling_enabled: Some(pooling_enabled),
                max_request_body_bytes,
                description,
                metadata,
            };
            let created = api.create(&body).map_err(|e| e.to_string())?;
            print(json, &created, show_endpoint);
        }
        EndpointsCommand::List { limit, before_id } => {
            let page = api
                .list(limit, before_id.as_deref())
                .map_err(|e| e.to_string())?;
            print(json, &page, show_page);
        }
        EndpointsCommand::Get { id } => {
            let endpoint = api.get(&id).map_err(|e| e.to_string())?;
            print(json, &endpoint, show_endpoint);
        }
        EndpointsCommand::Update {
            id,
            url,
            binding,
            traffic_policy,
            upstream_url,
            pooling_enabled,
            max_request_body_bytes,
            description,
            metadata,
        } => {
            let body = UpdateEndpoint {
                url,
                bindings: binding.map(|b| vec![b]),
                traffic_policy: traffic_policy.as_deref().map(policy_arg).transpose()?,
                upstream_url,
                pooling_enabled,
                max_request_body_bytes,
                description,
                metadata,
            };
            let updated = api.update(&id, &body).map_err(|e| e.to_string())?;
            print(json, &updated, show_endpoint);
        }
        EndpointsCommand::Delete { id } => {
            api.delete(&id).map_err(|e| e.to_string())?;
            if json {
                println!("{{\"deleted\":\"{id}\"}}");
            } else {
                println!("deleted {id}");
            }
        }
    }
    Ok(())
}

fn tunnel_sessions(command: TunnelSessionsCommand, access: &ApiAccess) -> Result<(), String> {
    let api = client(access)?;
    let (id, command, body) = match command {
        TunnelSessionsCommand::List => {
            let list = api.list_tunnel_sessions().map_err(|e| e.to_string())?;
            print(access.json, &list, show_tunnel_sessions);
            return Ok(());
        }
        TunnelSessionsCommand::Get { id } => {
            let session = api.get_tunnel_session(&id).map_err(|e| e.to_string())?;
            print(access.json, &session, |s| {
                serde_json::to_string_pretty(s).unwrap_or_default() + "\n"
            });
            return Ok(());
        }
        TunnelSessionsCommand::Stop { id } => (id, "stop", serde_json::json!({})),
        TunnelSessionsCommand::Restart { id } => (id, "restart", serde_json::json!({})),
        TunnelSessionsCommand::Update {
            id,
            version,
            permit_major_version,
        } => (
            id,
            "update",
            serde_json::json!({"version": version, "permit_major_version": permit_major_version}),
        ),
    };
    api.tunnel_session_command(&id, command, &body)
        .map_err(|e| e.to_string())?;
    if access.json {
        println!(
            "{}",
            serde_json::json!({ "session": id, "command": command })
        );
    } else {
        println!("{command}: the agent of {id} accepted");
    }
    Ok(())
}

fn authtokens(command: AuthtokensCommand, access: &ApiAccess) -> Result<(), String> {
    let api = client(access)?;
    match command {
        AuthtokensCommand::Create { description } => {
            let created = api
                .create_authtoken(&CreateAuthtoken { description })
                .map_err(|e| e.to_string())?;
            print(access.json, &created, |created| {
                eprintln!(
                    "authtoken {}; the token is shown once:",
                    created.authtoken.id
                );
                format!("{}\n", created.token)
            });
        }
        AuthtokensCommand::List => {
            let list = api.list_authtokens().map_err(|e| e.to_string())?;
            print(access.json, &list, show_authtokens);
        }
        AuthtokensCommand::Revoke { id } => {
            api.revoke_authtoken(&id).map_err(|e| e.to_string())?;
            if access.json {
                println!("{{\"revoked\":\"{id}\"}}");
            } else {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

/// Agent mode: an endpoint held by this process in front of `args.upstream`
/// ([`innergate::agent`]).
fn agent(proto: &str, args: AgentArgs) -> Result<(), String> {
    let upstream = if args.upstream.contains("://") {
        args.upstream.clone()
    } else {
        let scheme = if proto == "http" { "http" } else { "tcp" };
        if args.upstream.bytes().all(|b| b.is_ascii_digit()) {
            format!("{scheme}://127.0.0.1:{}", args.upstream)
        } else {
            format!("{scheme}://{}", args.upstream)
        }
    };
    let url = if args.url.contains("://") {
        args.url.clone()
    } else {
        format!("{proto}://{}", args.url)
    };
    let traffic_policy = args
        .traffic_policy_file
        .as_ref()
        .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    let json = args.access.json;
    if !args.direct {
        return tunnel_agent(proto, args, url, upstream, traffic_policy);
    }
    let api = client(&args.access)?;
    let body = CreateEndpoint {
        url,
        kind: Some("agent".into()),
        bindings: args.binding.map(|b| vec![b]),
        traffic_policy,
        upstream_url: Some(upstream.clone()),
        held_by: Some(HeldBy::Agent),
        pooling_enabled: Some(args.pooling_enabled),
        description: Some(format!("innergate {proto} agent")),
        ..Default::default()
    };
    innergate::agent::run(api, body, |endpoint| {
        if json {
            println!(
                "{}",
                serde_json::to_string(endpoint).expect("API types serialize")
            );
        } else {
            println!("{} -> {upstream}  ({})", endpoint.url, endpoint.id);
        }
    })
}

/// Agent mode over a tunnel (the default): this process dials the gateway and relays
/// the endpoint's traffic to `upstream`, resolved here.
fn tunnel_agent(
    proto: &str,
    args: AgentArgs,
    url: String,
    upstream: String,
    traffic_policy: Option<String>,
) -> Result<(), String> {
    let key = args.access.api_key.clone();
    let server_addr = match args.server_addr.clone() {
        Some(addr) => addr,
        None => {
            client(&args.access)?
                .tunnel()
                .map_err(|e| format!("where is the tunnel listener? {e}"))?
                .server_addr
        }
    };
    let authtoken = args
        .authtoken
        .clone()
        .or(key)
        .ok_or("no credential: pass --authtoken (or --api-key)")?;
    let ca = args
        .tunnel_ca
        .as_ref()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    let agent = innergate::tunnel_agent::TunnelAgent {
        proto: proto.to_string(),
        url,
        binding: args.binding.clone(),
        pooling_enabled: args.pooling_enabled,
        traffic_policy,
        upstream: upstream.clone(),
        server_addr,
        authtoken,
        ca,
        sessions: args.sessions,
    };
    let json = args.access.json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(innergate::tunnel_agent::run(agent, |id, url| {
        if json {
            println!(
                "{}",
                serde_json::json!({"id": id, "url": url, "upstream": upstream})
            );
        } else {
            println!("{url} -> {upstream}  ({id}, over a tunnel)");
        }
    }))
}
