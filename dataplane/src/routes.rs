//! The compiled, immutable form of an endpoint table that workers route with.
//!
//! Built once per table on the control thread, shared read-only by every worker: host
//! indexes per public port, internal indexes per (account, scheme, port), pools,
//! resolved upstream addresses, and the runtime state of actions (rate-limit counters,
//! terminate-tls configs) under the ids their actions have in their policies. A leaf:
//! it imports no I/O module.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use innergate_table::url::Family;
use innergate_table::{
    Binding, EndpointKind, EndpointTable, EndpointUrl, HostPattern, Policy, Scheme,
};
use smallvec::SmallVec;

use crate::fast_map::FastMap;
use crate::upstream::{Upstream, UpstreamAddr};
use innergate_table::wire::AuthtokenRecord;

use crate::ratelimit::{EndpointLimits, RateCounters, RateRegistry};
use crate::stats::{SlotPlan, StatsSlots};
use crate::tls::certs::{pair_from_pem, CertStore, TlsServer};
use innergate_table::policy::actions::terminate_tls::TlsVersion;
use innergate_table::policy::{Action, ActionId, Phase};
use rustls::pki_types::ServerName;

/// Index of an endpoint in [`RouteTable::endpoints`].
pub(crate) type EndpointIdx = u32;
/// Index of a pool in [`RouteTable::pools`].
pub(crate) type PoolIdx = u32;

/// Where traffic that a policy does not end goes.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A cloud endpoint: nowhere; its policy must end the request.
    None,
    /// An agent endpoint's upstream: dialled, or behind its tunnel sessions.
    Upstream(Upstream),
    /// An agent endpoint whose upstream host did not resolve.
    Unresolved,
}

/// One endpoint, ready to serve.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) id: String,
    pub(crate) account: u32,
    /// The account's id, as access logs name it.
    pub(crate) account_id: Arc<str>,
    pub(crate) url: EndpointUrl,
    /// `endpoint.url` and `endpoint.host` as expressions read them.
    pub(crate) url_text: String,
    pub(crate) host_text: String,
    /// `endpoint.addr`: `host:port`.
    pub(crate) addr_text: String,
    pub(crate) policy: Arc<Policy>,
    pub(crate) target: Target,
    pub(crate) pool: PoolIdx,
    /// Where this endpoint's counters live, stable across tables.
    pub(crate) stats_slot: usize,
    /// The largest request body it accepts.
    pub(crate) max_request_body: Option<u64>,
    /// Counters of its `rate-limit` actions, by action id.
    pub(crate) limits: EndpointLimits,
    /// TLS configs of its `terminate-tls` actions, by action id.
    terminations: SmallVec<[(ActionId, TlsServer); 1]>,
}

impl Route {
    /// The counters of its rate-limit action `id`.
    pub(crate) fn limit(&self, id: ActionId) -> Option<&RateCounters> {
        self.limits
            .iter()
            .find(|(a, _)| *a == id)
            .map(|(_, c)| &**c)
    }

    /// The TLS server of its terminate-tls action `id`.
    pub(crate) fn termination(&self, id: ActionId) -> Option<TlsServer> {
        self.terminations
            .iter()
            .find(|(a, _)| *a == id)
            .map(|(_, c)| c.clone())
    }
}

/// Hosts of one namespace: exact names beat wildcards; the longest wildcard suffix wins.
#[derive(Debug, Default)]
struct HostIndex {
    exact: FastMap<Box<str>, PoolIdx>,
    wildcard: FastMap<Box<str>, PoolIdx>,
}

impl HostIndex {
    fn insert(&mut self, host: &HostPattern, pool: PoolIdx) {
        match host {
            HostPattern::Exact(h) => self.exact.insert(h.as_str().into(), pool),
            HostPattern::Wildcard(s) => self.wildcard.insert(s.as_str().into(), pool),
        };
    }

    fn get(&self, host: &HostPattern) -> Option<PoolIdx> {
        match host {
            HostPattern::Exact(h) => self.exact.get(h.as_str()),
            HostPattern::Wildcard(s) => self.wildcard.get(s.as_str()),
        }
        .copied()
    }

    /// Looks up a lowercased host.
    fn lookup(&self, host: &str) -> Option<PoolIdx> {
        if let Some(&p) = self.exact.get(host) {
            return Some(p);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Suffixes from the longest: `a.b.c` tries `b.c`, then `c`.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(&p) = self.wildcard.get(rest) {
                return Some(p);
            }
        }
        None
    }
}

/// Why a table cannot be served by this data plane.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CompileError {
    /// A protocol this data plane does not serve yet.
    #[error("endpoint {id}: {what} are not served by this data plane yet")]
    Unsupported { id: String, what: &'static str },
    /// A terminate-tls certificate is unusable.
    #[error("endpoint {id}: terminate-tls: {message}")]
    Certificate { id: String, message: String },
}

/// A table ready for workers.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    /// Unique per compiled table in this process (0: the empty table workers start
    /// with), so that a connection can tell whether what it knows about endpoints
    /// (their indexes, the on_tcp_connect that ran) still refers to this table.
    pub(crate) generation: u64,
    pub(crate) endpoints: Vec<Route>,
    pools: Vec<SmallVec<[EndpointIdx; 2]>>,
    /// Public http hosts by URL port.
    public_http: FastMap<u16, HostIndex>,
    /// Public tcp endpoints by URL port.
    public_tcp: FastMap<u16, PoolIdx>,
    /// Internal hosts by (account, scheme, port).
    internal: FastMap<(u32, Scheme, u16), HostIndex>,
    /// Public URL ports and the scheme each serves.
    pub(crate) listen_ports: BTreeMap<u16, Scheme>,
    /// Every upstream the table names, so that workers can close the pooled
    /// connections of upstreams it no longer does.
    upstreams: HashSet<UpstreamAddr, foldhash::fast::RandomState>,
    /// Endpoint ids, for the tunnel sessions that hold some.
    ids: HashSet<Box<str>, foldhash::fast::RandomState>,
    /// Authtokens by the SHA-256 of their secret: (id, account).
    authtokens: FastMap<[u8; 32], (Box<str>, Box<str>)>,
}

/// What a compiled table would change outside itself, applied only once the table is
/// served: a refused table leaves no trace.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The rate-limit counters to keep from now on.
    pub(crate) limits: RateRegistry,
    /// The metric slots of the table's endpoints.
    pub(crate) slots: SlotPlan,
}

impl RouteTable {
    /// Compiles a checked table, resolving upstream host names (this may block; it runs
    /// on the control thread, never on a worker).
    pub(crate) fn compile(
        table: &EndpointTable,
        limits: &RateRegistry,
        workers: usize,
        certs: &Arc<CertStore>,
        slots: &StatsSlots,
    ) -> Result<(RouteTable, Staged), CompileError> {
        static GENERATIONS: AtomicU64 = AtomicU64::new(1);
        let mut routes = RouteTable {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            ..RouteTable::default()
        };
        let (mut endpoint_limits, staged_limits) = limits.stage(table, workers);
        let slots = slots.plan(
            table
                .endpoints
                .iter()
                .map(|ep| (&*ep.id, ep.url.to_string())),
        );
        let mut accounts: HashMap<&str, (u32, Arc<str>)> = HashMap::new();
        let mut resolved: HashMap<(String, u16), Option<SocketAddr>> = HashMap::new();
        for (i, ep) in table.endpoints.iter().enumerate() {
            let next_account = accounts.len() as u32;
            let (account, account_id) = accounts
                .entry(ep.account.as_str())
                .or_insert_with(|| (next_account, ep.account.as_str().into()))
                .clone();

            routes.ids.insert(ep.id.as_str().into());
            let target = match &ep.kind {
                EndpointKind::Cloud => Target::None,
                EndpointKind::Tunnel => Target::Upstream(Upstream::Tunnel(ep.id.as_str().into())),
                EndpointKind::Agent { upstream } => {
                    // The upstream speaks the endpoint's family: http(s) behind
                    // http/https, tcp or tls behind tcp/tls.
                    let (fits, tls) = match (ep.url.scheme.family(), upstream.scheme) {
                        (Family::Http, Scheme::Http) | (Family::Stream, Scheme::Tcp) => {
                            (true, false)
                        }
                        (Family::Http, Scheme::Https) | (Family::Stream, Scheme::Tls) => {
                            (true, true)
                        }
                        _ => (false, false),
                    };
                    if !fits {
                        return Err(CompileError::Unsupported {
                            id: ep.id.clone(),
                            what: "upstreams of another protocol family than their endpoint",
                        });
                    }
                    let server_name = if tls {
                        let name = ServerName::try_from(upstream.host.clone()).map_err(|_| {
                            CompileError::Certificate {
                                id: ep.id.clone(),
                                message: format!("`{}` is not a TLS server name", upstream.host),
                            }
                        })?;
                        Some(name)
                    } else {
                        None
                    };
                    let key = (upstream.host.clone(), upstream.port);
                    let addr = *resolved.entry(key).or_insert_with(|| {
                        let addr = (upstream.host.as_str(), upstream.port)
                            .to_socket_addrs()
                            .ok()
                            .and_then(|mut a| a.next());
                        if addr.is_none() {
                            log::warn!("endpoint {}: upstream {upstream} does not resolve", ep.id);
                        }
                        addr
                    });
                    addr.map_or(Target::Unresolved, |addr| {
                        let upstream = UpstreamAddr {
                            addr,
                            tls: server_name,
                        };
                        routes.upstreams.insert(upstream.clone());
                        Target::Upstream(Upstream::Dial(upstream))
                    })
                }
            };
            let next_pool = routes.pools.len() as PoolIdx;
            let pool = match (ep.binding, ep.url.scheme) {
                // tcp routes by port alone: one URL (a pool at most) per port.
                (Binding::Public, Scheme::Tcp) => {
                    routes.listen_ports.insert(ep.url.port, ep.url.scheme);
                    *routes.public_tcp.entry(ep.url.port).or_insert(next_pool)
                }
                (Binding::Public, _) => {
                    routes.listen_ports.insert(ep.url.port, ep.url.scheme);
                    let index = routes.public_http.entry(ep.url.port).or_default();
                    index.get(&ep.url.host).unwrap_or_else(|| {
                        index.insert(&ep.url.host, next_pool);
                        next_pool
                    })
                }
                (Binding::Internal, _) => {
                    let index = routes
                        .internal
                        .entry((account, ep.url.scheme, ep.url.port))
                        .or_default();
                    index.get(&ep.url.host).unwrap_or_else(|| {
                        index.insert(&ep.url.host, next_pool);
                        next_pool
                    })
                }
            };
            if pool == next_pool {
                routes.pools.push(SmallVec::new());
            }
            routes.pools[pool as usize].push(i as EndpointIdx);
            let mut terminations = SmallVec::new();
            for (r, rule) in ep.policy.on_tcp_connect.iter().enumerate() {
                for (a, action) in rule.actions.iter().enumerate() {
                    let Action::TerminateTls(t) = action else {
                        continue;
                    };
                    let store = match &t.certificate {
                        Some((cert, key)) => {
                            Arc::new(CertStore::single(pair_from_pem(cert, key).map_err(
                                |message| CompileError::Certificate {
                                    id: ep.id.clone(),
                                    message,
                                },
                            )?))
                        }
                        None if certs.is_empty() => {
                            return Err(CompileError::Certificate {
                                id: ep.id.clone(),
                                message: "terminate-tls without its own certificate needs \
                                          --tls-cert/--tls-key or --tls-cert-dir"
                                    .into(),
                            })
                        }
                        None => certs.clone(),
                    };
                    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
                        (TlsVersion::V1_2, &rustls::version::TLS12),
                        (TlsVersion::V1_3, &rustls::version::TLS13),
                    ]
                    .into_iter()
                    .filter(|(v, _)| (t.min_version..=t.max_version).contains(v))
                    .map(|(_, p)| p)
                    .collect();
                    let config = store
                        .server_with(&versions, t.client_auth.as_ref())
                        .map_err(|message| CompileError::Certificate {
                            id: ep.id.clone(),
                            message,
                        })?;
                    terminations.push((ActionId::new(Phase::TcpConnect, r, a), config));
                }
            }
            routes.endpoints.push(Route {
                id: ep.id.clone(),
                account,
                account_id,
                url: ep.url.clone(),
                url_text: ep.url.to_string(),
                host_text: ep.url.host.to_string(),
                addr_text: format!("{}:{}", ep.url.host, ep.url.port),
                policy: ep.policy.clone(),
                target,
                pool,
                stats_slot: slots.slot(i),
                max_request_body: ep.max_request_body,
                limits: std::mem::take(&mut endpoint_limits[i]),
                terminations,
            });
        }
        let staged = Staged {
            limits: staged_limits,
            slots,
        };
        Ok((routes, staged))
    }

    /// Takes the table's authtokens (only their hashes travel).
    pub(crate) fn set_authtokens(&mut self, tokens: &[AuthtokenRecord]) {
        for t in tokens {
            let Some(hash) = decode_sha256(&t.sha256) else {
                log::warn!("authtoken {}: its hash is not SHA-256 hex; ignored", t.id);
                continue;
            };
            self.authtokens
                .insert(hash, (t.id.as_str().into(), t.account.as_str().into()));
        }
    }

    /// The authtoken whose secret is `token`: its id and account.
    pub(crate) fn authtoken(&self, token: &str) -> Option<(&str, &str)> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let key: [u8; 32] = digest.as_ref().try_into().ok()?;
        self.authtokens
            .get(&key)
            .map(|(id, account)| (&**id, &**account))
    }

    /// Whether the authtoken with this id is still live.
    pub(crate) fn has_authtoken(&self, id: &str) -> bool {
        self.authtokens.values().any(|(i, _)| &**i == id)
    }

    /// Whether the table has the endpoint with this id.
    pub(crate) fn has_endpoint(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Whether an endpoint of the table has this upstream.
    pub(crate) fn names_upstream(&self, upstream: &Upstream) -> bool {
        match upstream {
            Upstream::Dial(addr) => self.upstreams.contains(addr),
            Upstream::Tunnel(id) => self.ids.contains(&**id),
        }
    }

    /// The pool serving public tcp port `port`.
    pub(crate) fn public_tcp(&self, port: u16) -> Option<PoolIdx> {
        self.public_tcp.get(&port).copied()
    }

    /// The pool serving `host` (Host header or SNI) on public http, https or tls port
    /// `port`.
    pub(crate) fn public_by_host(&self, port: u16, host: &str) -> Option<PoolIdx> {
        self.public_http.get(&port)?.lookup(host)
    }

    /// The pool an internal URL names within `account`.
    pub(crate) fn internal(&self, account: u32, url: &EndpointUrl) -> Option<PoolIdx> {
        let index = self.internal.get(&(account, url.scheme, url.port))?;
        match &url.host {
            HostPattern::Exact(h) => index.lookup(h),
            HostPattern::Wildcard(_) => None,
        }
    }

    /// A pool member, uniformly at random among those that can serve: a tunnelled
    /// member without a session is skipped while another member can take the traffic.
    pub(crate) fn pick(&self, pool: PoolIdx) -> EndpointIdx {
        let members = &self.pools[pool as usize];
        if members.len() == 1 {
            return members[0];
        }
        let start = fastrand::usize(..members.len());
        (0..members.len())
            .map(|i| members[(start + i) % members.len()])
            .find(|&m| match &self.route(m).target {
                Target::Upstream(Upstream::Tunnel(id)) => crate::tunnel::online::online(id),
                _ => true,
            })
            .unwrap_or(members[start])
    }

    pub(crate) fn route(&self, idx: EndpointIdx) -> &Route {
        &self.endpoints[idx as usize]
    }
}

/// 64 hex digits to 32 bytes.
fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use innergate_table::EndpointRecord;

    fn table(urls: &[(&str, &str)]) -> RouteTable {
        let records: Vec<_> = urls
            .iter()
            .enumerate()
            .map(|(i, (account, url))| EndpointRecord {
                id: format!("ep_{i}"),
                account: account.to_string(),
                url: url.to_string(),
                upstream: "127.0.0.1:9".into(),
                ..Default::default()
            })
            .collect();
        let table = EndpointTable::from_records(1, &records).unwrap();
        RouteTable::compile(
            &table,
            &RateRegistry::default(),
            2,
            &Arc::default(),
            &StatsSlots::default(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn exact_beats_wildcard_and_longest_wildcard_wins() {
        let t = table(&[
            ("a", "http://*.example.com"),
            ("a", "http://*.api.example.com"),
            ("a", "http://x.api.example.com"),
        ]);
        let ep = |host| {
            t.public_by_host(80, host)
                .map(|p| t.route(t.pick(p)).id.clone())
        };
        assert_eq!(ep("x.api.example.com").as_deref(), Some("ep_2"));
        assert_eq!(ep("y.api.example.com").as_deref(), Some("ep_1"));
        assert_eq!(ep("deep.y.api.example.com").as_deref(), Some("ep_1"));
        assert_eq!(ep("api.example.com").as_deref(), Some("ep_0"));
        assert_eq!(ep("example.com"), None);
        assert_eq!(ep("other.com"), None);
        assert_eq!(t.public_by_host(81, "x.api.example.com"), None);
    }

    #[test]
    fn internal_lookups_stay_in_the_account() {
        let t = table(&[("a", "https://api.internal"), ("b", "https://api.internal")]);
        let url = EndpointUrl::parse("https://api.internal").unwrap();
        let a = t.route(t.pick(t.internal(0, &url).unwrap()));
        let b = t.route(t.pick(t.internal(1, &url).unwrap()));
        assert_eq!((a.id.as_str(), b.id.as_str()), ("ep_0", "ep_1"));
        assert!(t.internal(2, &url).is_none());
        assert!(t.public_by_host(443, "api.internal").is_none());
    }
}
