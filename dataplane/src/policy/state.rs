//! What the executor keeps, in two lifetimes: [`ConnState`] for as long as a client
//! connection is open (who is connected, the TLS facts, the endpoints whose
//! `on_tcp_connect` ran on it and the vars it set), and [`RequestState`] for one
//! exchange (the forward-internal chain, the request's vars, a forward-internal error
//! that `on_error: continue` let through).

use smallvec::SmallVec;

use innergate_table::policy::results::Results;

use crate::error::ProxyError;
use crate::ipintel::IpFacts;
use crate::routes::{EndpointIdx, RouteTable};
use crate::tls::facts::TlsFacts;

/// The endpoints a request went through: the public one first, then each
/// forward-internal target.
pub(crate) type Chain = SmallVec<[EndpointIdx; 4]>;

/// What a connection tells expressions, computed once per connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// The worker serving it (its slots in rate-limit counters).
    pub(crate) worker: usize,
    /// `http`, `https`, `tcp` or `tls`, as the client connected.
    pub(crate) scheme: &'static str,
    /// The SNI the client sent, for `conn.tls.sni`.
    pub(crate) sni: Option<String>,
    pub(crate) client_ip: String,
    pub(crate) client_port: u16,
    pub(crate) server_port: u16,
    /// `conn.ts.start`: when the connection was accepted, in nanoseconds since the
    /// Unix epoch.
    pub(crate) started_ns: i64,
    /// What the handshake established (`conn.tls.*` but the SNI), on https.
    pub(crate) tls: Option<Box<TlsFacts>>,
    /// What the IP data says of the client, looked up when a policy first asks.
    ip: std::cell::OnceCell<Box<IpFacts>>,
}

impl ConnInfo {
    /// The facts of a connection from `peer` on local port `server_port`.
    pub(crate) fn new(
        worker: usize,
        scheme: &'static str,
        sni: Option<String>,
        peer: std::net::SocketAddr,
        server_port: u16,
    ) -> Self {
        ConnInfo {
            worker,
            scheme,
            sni,
            client_ip: peer.ip().to_string(),
            client_port: peer.port(),
            server_port,
            started_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
            tls: None,
            ip: std::cell::OnceCell::new(),
        }
    }

    /// What the IP data says of the client (`conn.geo.*`, `conn.client_ip.*`).
    pub(crate) fn ip(&self) -> &IpFacts {
        self.ip.get_or_init(|| {
            let facts = self
                .client_ip
                .parse()
                .map(crate::ipintel::lookup_here)
                .unwrap_or_default();
            Box::new(facts)
        })
    }
}

/// `vars.*`, set by `set-vars`: values of any type.
#[derive(Clone, Debug, Default)]
pub(crate) struct Vars(SmallVec<[(String, serde_json::Value); 4]>);

impl Vars {
    pub(crate) fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub(crate) fn set(&mut self, name: &str, value: serde_json::Value) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// An endpoint whose `on_tcp_connect` ran on this connection and let it through.
#[derive(Debug)]
struct Connected {
    endpoint: EndpointIdx,
    /// What its `on_tcp_connect` set: the start of every request's vars there.
    vars: Vars,
}

/// How `on_tcp_connect` ended for an endpoint of an HTTP connection.
#[derive(Debug)]
pub(crate) enum Admission<'c> {
    /// The connection may carry requests to the endpoint; they start with these vars.
    Admitted(&'c Vars),
    /// The phase closed the connection (deny, restrict-ips, close-connection, or a
    /// failed forward with `on_error: halt`).
    Refused,
}

/// The most endpoints a connection remembers as admitted. A client naming more
/// endpoints (with an on_tcp_connect) on one connection makes the oldest be
/// forgotten, whose on_tcp_connect then runs again before its next request: memory
/// and the per-request search stay bounded, and admission is never skipped.
const MAX_CONNECTED: usize = 8;

/// What one client connection keeps between its requests.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) info: ConnInfo,
    /// Endpoints of table `generation` whose `on_tcp_connect` ran and admitted this
    /// connection. A request reaches an endpoint with an `on_tcp_connect` only after
    /// it ran here, once, whichever request first named the endpoint.
    connected: SmallVec<[Connected; 1]>,
    generation: u64,
}

impl ConnState {
    pub(crate) fn new(info: ConnInfo) -> Self {
        ConnState {
            info,
            connected: SmallVec::new(),
            generation: 0,
        }
    }

    /// Runs `entry`'s `on_tcp_connect` on this connection unless it already ran: once
    /// per endpoint per connection, before the endpoint's first request. A table
    /// change (a new generation) starts over: the endpoint's policy may have changed,
    /// so its `on_tcp_connect` runs again before the next request reaches it.
    pub(crate) fn admit(&mut self, table: &RouteTable, entry: EndpointIdx) -> Admission<'_> {
        if self.generation != table.generation {
            self.connected.clear();
            self.generation = table.generation;
        }
        let known = self.connected.iter().position(|c| c.endpoint == entry);
        let position = match known {
            Some(position) => position,
            None => {
                let mut state = RequestState::default();
                match super::run_connect(table, entry, &self.info, &mut state) {
                    super::ConnectOutcome::Close(_) => return Admission::Refused,
                    super::ConnectOutcome::Proceed { .. } => {}
                }
                if self.connected.len() == MAX_CONNECTED {
                    self.connected.remove(0);
                }
                self.connected.push(Connected {
                    endpoint: entry,
                    vars: state.vars,
                });
                self.connected.len() - 1
            }
        };
        Admission::Admitted(&self.connected[position].vars)
    }
}

/// What the phases of one exchange keep between them.
#[derive(Debug, Default)]
pub(crate) struct RequestState {
    pub(crate) chain: Chain,
    pub(crate) vars: Vars,
    /// The last forward-internal failure that an `on_error: continue` let through.
    pub(crate) forward_error: Option<ProxyError>,
    /// What the actions that ran recorded (`actions.ngrok.*`).
    pub(crate) results: Results,
}

impl RequestState {
    /// Starts an exchange at `entry` with `vars` (those its `on_tcp_connect` set).
    pub(crate) fn start(&mut self, entry: EndpointIdx, vars: Option<&Vars>) {
        self.chain.clear();
        self.chain.push(entry);
        match vars {
            Some(vars) => self.vars.clone_from(vars),
            None => self.vars.clear(),
        }
        self.forward_error = None;
        self.results.clear();
    }
}
