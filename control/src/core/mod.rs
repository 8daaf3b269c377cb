//! The control core: one thread that owns the store, a mirror of every endpoint and
//! authtoken, the agent leases and the link to the data plane. API handlers send it
//! commands and await the reply, so changes are serialized without locks.
//!
//! A change is checked against the whole table with the model crate, pushed to the data
//! plane, and committed only once the data plane acknowledged it; a refusal leaves
//! nothing behind. Without a data plane the change is committed and pushed when one
//! connects.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use innergate_table::tunnel_calls::{TunnelAnswer, TunnelCall};
use innergate_table::wire::{AuthtokenRecord, TableMessage};
use innergate_table::{Binding, EndpointRecord, EndpointTable};
use tokio::sync::oneshot;

use crate::authtoken::{
    new_token, AuthtokenHash, AuthtokenList, CreateAuthtoken, CreatedAuthtoken, StoredAuthtoken,
    MAX_DESCRIPTION,
};
use crate::endpoint::{
    canonical_url, hash_key, new_api_key, now, single_binding, CreateEndpoint, EndpointPage,
    EndpointView, HeldBy, IdGen, StoredEndpoint, UpdateEndpoint,
};
use crate::error::ApiError;
use crate::link::{DataPlaneLink, Pushed};
use crate::metrics::ControlMetrics;
use crate::store::{Account, EndpointChange, Store};

/// How often leases are checked and the data plane's table compared with ours.
const TICK: Duration = Duration::from_millis(200);

mod tunnel;

type Reply<T> = oneshot::Sender<T>;

/// A request to the core.
#[derive(Debug)]
pub enum Command {
    /// Which account owns this key?
    Authenticate(String, Reply<Result<Option<Account>, ApiError>>),
    /// Create an account; answers with it and its key.
    CreateAccount(String, Reply<Result<(Account, String), ApiError>>),
    /// `POST /endpoints`.
    Create(
        String,
        CreateEndpoint,
        Reply<Result<EndpointView, ApiError>>,
    ),
    /// `GET /endpoints`.
    List(String, ListQuery, Reply<Result<EndpointPage, ApiError>>),
    /// `GET /endpoints/{id}`.
    Get(String, String, Reply<Result<EndpointView, ApiError>>),
    /// `PATCH /endpoints/{id}`.
    Update(
        String,
        String,
        UpdateEndpoint,
        Reply<Result<EndpointView, ApiError>>,
    ),
    /// `DELETE /endpoints/{id}`.
    Delete(String, String, Reply<Result<(), ApiError>>),
    /// `POST /endpoints/{id}/lease`: an agent is still there.
    RenewLease(String, String, Reply<Result<LeaseView, ApiError>>),
    /// `POST /authtokens`.
    CreateAuthtoken(
        String,
        CreateAuthtoken,
        Reply<Result<CreatedAuthtoken, ApiError>>,
    ),
    /// `GET /authtokens`.
    ListAuthtokens(String, Reply<AuthtokenList>),
    /// `DELETE /authtokens/{id}`.
    RevokeAuthtoken(String, String, Reply<Result<(), ApiError>>),
    /// Every live authtoken of every account, as the tunnel listener checks them.
    AuthtokenHashes(Reply<Vec<AuthtokenHash>>),
    /// A call from the data plane's tunnel sessions (a Bind, endpoints released or
    /// still held).
    Tunnel(TunnelCall, Reply<TunnelAnswer>),
}

/// Paging of `GET /endpoints`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1–100 (default 100).
    pub limit: Option<usize>,
    /// Only endpoints older than this id.
    pub before_id: Option<String>,
}

/// A renewed lease.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LeaseView {
    /// The endpoint.
    pub id: String,
    /// Seconds until the endpoint is removed unless renewed again.
    pub expires_in_secs: u64,
}

/// Settings of the core.
#[derive(Debug)]
pub struct CoreConfig {
    /// How long an endpoint an agent holds lives without a renewal.
    pub lease_ttl: Duration,
    /// The tunnel listener's public address (`host:port`), handed to agents.
    pub tunnel_url: Option<String>,
}

/// A handle to send commands to the core.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
    /// What `GET /metrics` shows.
    pub metrics: Arc<ControlMetrics>,
    /// Where agents open tunnel sessions, if this gateway has a tunnel listener.
    pub tunnel_url: Option<Arc<str>>,
    /// The data plane's control socket, for the tunnel sessions API (which asks the
    /// data plane directly: an agent's answer must not hold up the core).
    pub dataplane_socket: Option<Arc<std::path::Path>>,
}

impl CoreHandle {
    /// Sends a command built around a reply channel and awaits the reply.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| ApiError::internal("control core stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("control core dropped the request"))
    }

    /// As [`CoreHandle::call`], for threads outside the async runtime.
    pub fn call_blocking<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| ApiError::internal("control core stopped"))?;
        answer
            .blocking_recv()
            .map_err(|_| ApiError::internal("control core dropped the request"))
    }
}

/// Starts the core thread over a store and a data plane link.
pub fn spawn(
    store: Box<dyn Store>,
    link: DataPlaneLink,
    config: CoreConfig,
) -> Result<CoreHandle, ApiError> {
    let (version, stored) = store.load().map_err(ApiError::internal)?;
    let authtokens = store.authtokens().map_err(ApiError::internal)?;
    let api_keys = store.api_key_hashes().map_err(ApiError::internal)?;
    let now = Instant::now();
    // Agents get a fresh lease after a control restart: renewals lived in memory.
    // Static endpoints get none: they live until deleted.
    let leases = stored
        .iter()
        .filter(|e| e.has_lease())
        .map(|e| (e.id.clone(), now + config.lease_ttl))
        .collect();
    // A restarted control counts its tunnel endpoints as claimed now: their sessions'
    // renewals arrive within seconds if they are alive.
    let tunnel_held = stored
        .iter()
        .filter(|e| e.held_by == HeldBy::Tunnel)
        .map(|e| (e.id.clone(), now))
        .collect();
    let metrics = Arc::new(ControlMetrics::default());
    let tunnel_url = config.tunnel_url.as_deref().map(Arc::from);
    let dataplane_socket = link.socket().map(Arc::from);
    let core = Core {
        metrics: metrics.clone(),
        store,
        endpoints: stored.into_iter().map(|e| (e.id.clone(), e)).collect(),
        authtokens: authtokens.into_iter().map(|t| (t.id.clone(), t)).collect(),
        api_keys,
        version,
        link,
        in_sync: false,
        leases,
        tunnel_held,
        config,
        ids: IdGen::default(),
    };
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("ig-control-core".into())
        .spawn(move || core.run(rx))
        .map_err(ApiError::internal)?;
    Ok(CoreHandle {
        tx,
        metrics,
        tunnel_url,
        dataplane_socket,
    })
}

struct Core {
    store: Box<dyn Store>,
    /// Every endpoint of every account, by id (ids sort by creation).
    endpoints: BTreeMap<String, StoredEndpoint>,
    /// Every live authtoken of every account, by id (ids sort by creation).
    authtokens: BTreeMap<String, StoredAuthtoken>,
    /// Every API key as (SHA-256 hex, account): agents may authenticate with one.
    api_keys: Vec<(String, String)>,
    version: u64,
    link: DataPlaneLink,
    /// Whether the data plane is known to serve `version`.
    in_sync: bool,
    /// Id of an endpoint held by an agent → when it expires. Only those live on a
    /// lease (SPEC §1).
    leases: HashMap<String, Instant>,
    /// Id of an endpoint tunnel sessions hold → when a session last said so (a Bind, or
    /// the data plane's renewal).
    tunnel_held: HashMap<String, Instant>,
    config: CoreConfig,
    ids: IdGen,
    metrics: Arc<ControlMetrics>,
}

/// One change to the endpoint set.
enum Change {
    Put(Box<StoredEndpoint>),
    Delete(String),
}

impl Core {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut next_tick = Instant::now();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(command) => self.handle(command),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                self.expire_leases();
                self.sync();
                self.update_gauges();
                next_tick = Instant::now() + TICK;
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Authenticate(key, reply) => {
                let found = self
                    .store
                    .account_by_key_hash(&hash_key(&key))
                    .map_err(ApiError::internal);
                let _ = reply.send(found);
            }
            Command::CreateAccount(name, reply) => {
                let _ = reply.send(self.create_account(&name));
            }
            Command::Create(account, body, reply) => {
                let _ = reply.send(self.create(&account, body));
            }
            Command::List(account, query, reply) => {
                let _ = reply.send(self.list(&account, &query));
            }
            Command::Get(account, id, reply) => {
                let _ = reply.send(self.owned(&account, &id).map(StoredEndpoint::view));
            }
            Command::Update(account, id, body, reply) => {
                let _ = reply.send(self.update(&account, &id, body));
            }
            Command::Delete(account, id, reply) => {
                let result = self
                    .owned(&account, &id)
                    .map(|e| e.id.clone())
                    .and_then(|id| self.apply(Change::Delete(id)));
                let _ = reply.send(result);
            }
            Command::RenewLease(account, id, reply) => {
                let _ = reply.send(self.renew(&account, &id));
            }
            Command::CreateAuthtoken(account, body, reply) => {
                let _ = reply.send(self.create_authtoken(&account, body));
            }
            Command::ListAuthtokens(account, reply) => {
                let _ = reply.send(self.list_authtokens(&account));
            }
            Command::RevokeAuthtoken(account, id, reply) => {
                let _ = reply.send(self.revoke_authtoken(&account, &id));
            }
            Command::AuthtokenHashes(reply) => {
                let _ = reply.send(self.authtoken_hashes());
            }
            Command::Tunnel(call, reply) => {
                let _ = reply.send(self.tunnel_call(call));
            }
        }
    }

    fn update_gauges(&self) {
        let m = &self.metrics;
        m.endpoints
            .store(self.endpoints.len() as u64, Ordering::Relaxed);
        m.leases_active
            .store(self.leases.len() as u64, Ordering::Relaxed);
        m.table_version.store(self.version, Ordering::Relaxed);
        m.data_plane_in_sync
            .store(u64::from(self.in_sync), Ordering::Relaxed);
    }

    /// Counts a push by its outcome.
    fn count_push(&self, pushed: &Pushed) {
        let counter = match pushed {
            Pushed::Applied => &self.metrics.pushes_applied,
            Pushed::Refused(_) => &self.metrics.pushes_refused,
            Pushed::Unavailable(_) => &self.metrics.pushes_undelivered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn create_account(&mut self, name: &str) -> Result<(Account, String), ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::bad_body("an account needs a name"));
        }
        let account = Account {
            id: self.ids.next("acct"),
            name: name.trim().to_string(),
            created_at: now(),
        };
        let key = new_api_key();
        self.store
            .create_account(&account, &hash_key(&key))
            .map_err(ApiError::internal)?;
        log::info!("created account {} ({})", account.id, account.name);
        // The key also opens tunnel sessions: the data plane learns its hash.
        self.api_keys.push((hash_key(&key), account.id.clone()));
        self.tokens_changed();
        Ok((account, key))
    }

    fn owned(&self, account: &str, id: &str) -> Result<&StoredEndpoint, ApiError> {
        self.endpoints
            .get(id)
            .filter(|e| e.account == account)
            .ok_or_else(|| ApiError::not_found(id))
    }

    fn create(&mut self, account: &str, body: CreateEndpoint) -> Result<EndpointView, ApiError> {
        let agent = match body.kind.as_deref() {
            None => body.upstream_url.is_some(),
            Some("agent") => true,
            Some("cloud") => false,
            Some(other) => {
                return Err(ApiError::type_mismatch(format!(
                    "unknown type `{other}`: use agent or cloud"
                )))
            }
        };
        if agent != body.upstream_url.is_some() {
            return Err(ApiError::type_mismatch(if agent {
                "an agent endpoint needs an upstream_url"
            } else {
                "a cloud endpoint has no upstream_url"
            }));
        }
        let held_by = match body.held_by.unwrap_or_default() {
            HeldBy::Agent if !agent => {
                return Err(ApiError::type_mismatch(
                    "held_by agent needs an upstream_url: an agent holds the endpoint in front of its service",
                ))
            }
            HeldBy::Tunnel => {
                return Err(ApiError::bad_body(
                    "held_by tunnel is reserved for endpoints that tunnel sessions bind; create with held_by api or agent",
                ))
            }
            held_by => held_by,
        };
        let created_at = now();
        let endpoint = StoredEndpoint {
            id: self.ids.next("ep"),
            account: account.to_string(),
            url: body.url,
            binding: String::new(),
            upstream_url: body.upstream_url,
            held_by,
            traffic_policy: body.traffic_policy.unwrap_or_default(),
            pooling_enabled: body.pooling_enabled.unwrap_or(false),
            max_request_body_bytes: body.max_request_body_bytes.unwrap_or(0),
            description: body.description.unwrap_or_default(),
            metadata: body.metadata.unwrap_or_default(),
            updated_at: created_at.clone(),
            created_at,
        };
        let endpoint = normalize(endpoint, body.bindings.as_deref())?;
        let view = endpoint.view();
        let leased_id = endpoint.has_lease().then(|| endpoint.id.clone());
        self.apply(Change::Put(Box::new(endpoint)))?;
        if let Some(id) = leased_id {
            self.leases
                .insert(id, Instant::now() + self.config.lease_ttl);
        }
        Ok(view)
    }

    fn update(
        &mut self,
        account: &str,
        id: &str,
        body: UpdateEndpoint,
    ) -> Result<EndpointView, ApiError> {
        let mut endpoint = self.owned(account, id)?.clone();
        if body.upstream_url.is_some() && endpoint.held_by == HeldBy::Tunnel {
            return Err(ApiError::type_mismatch(
                "a tunnelled endpoint's upstream is its agent's to choose",
            ));
        }
        if body.upstream_url.is_some() && !endpoint.is_agent() {
            return Err(ApiError::type_mismatch(
                "a cloud endpoint has no upstream_url; create an agent endpoint instead",
            ));
        }
        if let Some(url) = body.url {
            endpoint.url = url;
            endpoint.binding.clear();
        }
        if let Some(v) = body.traffic_policy {
            endpoint.traffic_policy = v;
        }
        if let Some(v) = body.upstream_url {
            endpoint.upstream_url = Some(v);
        }
        if let Some(v) = body.pooling_enabled {
            endpoint.pooling_enabled = v;
        }
        if let Some(v) = body.max_request_body_bytes {
            endpoint.max_request_body_bytes = v;
        }
        if let Some(v) = body.description {
            endpoint.description = v;
        }
        if let Some(v) = body.metadata {
            endpoint.metadata = v;
        }
        endpoint.updated_at = now();
        let bindings = match body.bindings {
            Some(b) => Some(b),
            None if endpoint.binding.is_empty() => None,
            None => Some(vec![endpoint.binding.clone()]),
        };
        let endpoint = normalize(endpoint, bindings.as_deref())?;
        let view = endpoint.view();
        self.apply(Change::Put(Box::new(endpoint)))?;
        Ok(view)
    }

    fn list(&self, account: &str, query: &ListQuery) -> Result<EndpointPage, ApiError> {
        let limit = query.limit.unwrap_or(100);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_query("limit must be between 1 and 100"));
        }
        let upper = match &query.before_id {
            Some(id) => std::ops::Bound::Excluded(id.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let mut older = self
            .endpoints
            .range((std::ops::Bound::Unbounded, upper))
            .rev()
            .map(|(_, e)| e)
            .filter(|e| e.account == account);
        let endpoints: Vec<EndpointView> = older
            .by_ref()
            .take(limit)
            .map(StoredEndpoint::view)
            .collect();
        let more = older.next().is_some();
        let mut uri = format!("/endpoints?limit={limit}");
        if let Some(before) = &query.before_id {
            uri.push_str(&format!("&before_id={before}"));
        }
        let next_page_uri = match endpoints.last() {
            Some(last) if more => Some(format!("/endpoints?limit={limit}&before_id={}", last.id)),
            _ => None,
        };
        Ok(EndpointPage {
            endpoints,
            uri,
            next_page_uri,
        })
    }

    fn renew(&mut self, account: &str, id: &str) -> Result<LeaseView, ApiError> {
        let endpoint = self.owned(account, id)?;
        // Tunnel sessions renew their endpoints through the data plane, not the API.
        if endpoint.held_by != HeldBy::Agent {
            return Err(ApiError::no_lease(id, endpoint.held_by));
        }
        self.leases
            .insert(id.to_string(), Instant::now() + self.config.lease_ttl);
        self.metrics.lease_renewals.fetch_add(1, Ordering::Relaxed);
        Ok(LeaseView {
            id: id.to_string(),
            expires_in_secs: self.config.lease_ttl.as_secs(),
        })
    }

    fn create_authtoken(
        &mut self,
        account: &str,
        body: CreateAuthtoken,
    ) -> Result<CreatedAuthtoken, ApiError> {
        let description = body.description.unwrap_or_default();
        if description.len() > MAX_DESCRIPTION {
            return Err(ApiError::bad_body(format!(
                "description is {} bytes; at most {MAX_DESCRIPTION}",
                description.len()
            )));
        }
        let (token, sha256) = new_token();
        let authtoken = StoredAuthtoken {
            id: self.ids.next("at"),
            account: account.to_string(),
            sha256,
            description,
            created_at: now(),
        };
        self.store
            .create_authtoken(&authtoken)
            .map_err(ApiError::internal)?;
        let view = authtoken.view();
        log::info!("created authtoken {} of account {account}", authtoken.id);
        self.authtokens.insert(authtoken.id.clone(), authtoken);
        self.tokens_changed();
        Ok(CreatedAuthtoken {
            authtoken: view,
            token,
        })
    }

    fn list_authtokens(&self, account: &str) -> AuthtokenList {
        AuthtokenList {
            authtokens: self
                .authtokens
                .values()
                .rev()
                .filter(|t| t.account == account)
                .map(StoredAuthtoken::view)
                .collect(),
            uri: "/authtokens".into(),
        }
    }

    fn revoke_authtoken(&mut self, account: &str, id: &str) -> Result<(), ApiError> {
        // Another account's token is as absent as one that never existed.
        self.authtokens
            .get(id)
            .filter(|t| t.account == account)
            .ok_or_else(|| ApiError::authtoken_not_found(id))?;
        self.store
            .delete_authtoken(id)
            .map_err(ApiError::internal)?;
        self.authtokens.remove(id);
        log::info!("revoked authtoken {id} of account {account}");
        self.tokens_changed();
        Ok(())
    }

    /// Every live authtoken of every account, for the table the data plane's tunnel
    /// listener checks agents against.
    fn authtoken_hashes(&self) -> Vec<AuthtokenHash> {
        self.authtokens
            .values()
            .map(StoredAuthtoken::hash)
            .collect()
    }

    /// Pushes a table of `endpoints` (with the credentials) at `version`, counted.
    fn push(&mut self, version: u64, endpoints: Vec<EndpointRecord>) -> Pushed {
        let pushed = self.link.push(TableMessage {
            authtokens: self.credential_records(),
            version,
            endpoints,
        });
        self.count_push(&pushed);
        pushed
    }

    /// What tunnel sessions may authenticate with, as the data plane receives it:
    /// every authtoken and every API key, by hash only.
    fn credential_records(&self) -> Vec<AuthtokenRecord> {
        let tokens = self
            .authtoken_hashes()
            .into_iter()
            .map(|t| AuthtokenRecord {
                id: t.id,
                account: t.account,
                sha256: t.sha256,
            });
        let keys = self.api_keys.iter().map(|(hash, account)| AuthtokenRecord {
            id: api_key_credential(account),
            account: account.clone(),
            sha256: hash.clone(),
        });
        tokens.chain(keys).collect()
    }

    /// The set of live authtokens changed: the data plane gets a new table version at
    /// once (through the same path as a reconnect), so that a revoked token stops
    /// working with the next table rather than with an unrelated endpoint change.
    fn tokens_changed(&mut self) {
        let version = self.version + 1;
        if let Err(e) = self.store.commit(version, &[]) {
            log::error!("cannot record table version {version}: {e}");
            return;
        }
        self.version = version;
        self.in_sync = false;
        self.sync();
    }

    /// Checks, pushes and commits one change.
    fn apply(&mut self, change: Change) -> Result<(), ApiError> {
        let changed_id = match &change {
            Change::Put(e) => e.id.as_str(),
            Change::Delete(id) => id.as_str(),
        };
        // The changed endpoint goes last so that conflicts name it, not its elder.
        let mut records: Vec<EndpointRecord> = self
            .endpoints
            .values()
            .filter(|e| e.id != changed_id)
            .map(StoredEndpoint::record)
            .collect();
        if let Change::Put(e) = &change {
            records.push(e.record());
        }
        EndpointTable::from_records(self.version + 1, &records)?;
        let version = self.version + 1;
        let pushed = self.push(version, records);
        match pushed {
            Pushed::Applied => self.in_sync = true,
            Pushed::Refused(reason) => {
                log::warn!("data plane refused table version {version}: {reason}");
                return Err(ApiError::refused_by_data_plane(&reason));
            }
            Pushed::Unavailable(why) => {
                log::warn!("table version {version} not pushed ({why}); will push on connect");
                self.in_sync = false;
            }
        }
        let stored = match &change {
            Change::Put(e) => EndpointChange::Put(e),
            Change::Delete(id) => EndpointChange::Delete(id),
        };
        if let Err(e) = self.store.commit(version, &[stored]) {
            // The data plane may now serve a change the store lacks: push the
            // committed state again on the next tick.
            self.in_sync = false;
            return Err(ApiError::internal(e));
        }
        self.version = version;
        match change {
            Change::Put(e) => {
                self.endpoints.insert(e.id.clone(), *e);
            }
            Change::Delete(id) => {
                self.endpoints.remove(&id);
                self.leases.remove(&id);
                self.tunnel_held.remove(&id);
            }
        }
        Ok(())
    }

    fn expire_leases(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, &until)| until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.leases.remove(&id);
            match self.apply(Change::Delete(id.clone())) {
                Ok(()) => {
                    self.metrics.lease_expiries.fetch_add(1, Ordering::Relaxed);
                    log::info!("agent endpoint {id} removed: its lease expired")
                }
                Err(e) => log::error!("cannot remove expired agent endpoint {id}: {e}"),
            }
        }
    }

    /// Makes sure the data plane serves the current table: after a (re)connect, or
    /// when a push could not be delivered.
    fn sync(&mut self) {
        let Some(remote) = self.link.remote_version() else {
            self.in_sync = false;
            return;
        };
        if self.in_sync && remote == self.version {
            return;
        }
        // A data plane ahead of us (control restarted after a push it never
        // committed) only takes a newer version: skip past it.
        let version = self
            .version
            .max(remote.saturating_add(u64::from(remote > self.version)));
        let records = self
            .endpoints
            .values()
            .map(StoredEndpoint::record)
            .collect();
        let pushed = self.push(version, records);
        match pushed {
            Pushed::Applied => {
                if version != self.version {
                    if let Err(e) = self.store.commit(version, &[]) {
                        log::error!("cannot record table version {version}: {e}");
                    }
                    self.version = version;
                }
                self.in_sync = true;
                log::info!("data plane synchronised at table version {version}");
            }
            Pushed::Refused(reason) => {
                log::error!("data plane refused the full table version {version}: {reason}")
            }
            Pushed::Unavailable(_) => self.in_sync = false,
        }
    }
}

/// The credential id an account's API key has on the data plane (tunnel sessions may
/// authenticate with it).
fn api_key_credential(account: &str) -> String {
    format!("apikey_{account}")
}

/// Canonicalises the URL and settles the binding; the full check follows in
/// [`Core::apply`].
fn normalize(
    mut endpoint: StoredEndpoint,
    bindings: Option<&[String]>,
) -> Result<StoredEndpoint, ApiError> {
    let (url, canonical) = canonical_url(&endpoint.url).map_err(|e| {
        ApiError::from(innergate_table::TableError::Endpoint {
            id: endpoint.id.clone(),
            source: e.into(),
        })
    })?;
    let asked = bindings
        .map(single_binding)
        .transpose()
        .map_err(ApiError::bad_body)?;
    let binding = Binding::resolve(&url, asked).map_err(|e| {
        ApiError::from(innergate_table::TableError::Endpoint {
            id: endpoint.id.clone(),
            source: e,
        })
    })?;
    endpoint.url = canonical;
    endpoint.binding = binding.as_str().to_string();
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::hash_key;
    use crate::store::RedbStore;

    fn core(dir: &std::path::Path) -> CoreHandle {
        let store = RedbStore::open(dir).unwrap();
        let config = CoreConfig {
            lease_ttl: Duration::from_secs(30),
            tunnel_url: None,
        };
        spawn(Box::new(store), DataPlaneLink::new(None), config).unwrap()
    }

    fn call<T>(core: &CoreHandle, make: impl FnOnce(Reply<T>) -> Command) -> T {
        core.call_blocking(make).unwrap()
    }

    #[test]
    fn authtoken_hashes_are_every_live_token_with_its_account() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let mut tokens = Vec::new();
        for name in ["alice", "bob"] {
            let (account, _) = call(&core, |r| Command::CreateAccount(name.into(), r)).unwrap();
            let created = call(&core, |r| {
                Command::CreateAuthtoken(account.id.clone(), CreateAuthtoken::default(), r)
            })
            .unwrap();
            tokens.push((created, account.id));
        }
        let hashes = call(&core, Command::AuthtokenHashes);
        let expected: Vec<AuthtokenHash> = tokens
            .iter()
            .map(|(created, account)| AuthtokenHash {
                id: created.authtoken.id.clone(),
                account: account.clone(),
                sha256: hash_key(&created.token),
            })
            .collect();
        assert_eq!(hashes, expected);

        // A revoked token is no longer there, after a restart neither.
        let (alice, alice_account) = &tokens[0];
        call(&core, |r| {
            Command::RevokeAuthtoken(alice_account.clone(), alice.authtoken.id.clone(), r)
        })
        .unwrap();
        assert_eq!(call(&core, Command::AuthtokenHashes), expected[1..]);
        drop(core);
        // The store closes once the core thread sees its last handle go.
        let deadline = Instant::now() + Duration::from_secs(10);
        let reopened = loop {
            match RedbStore::open(dir.path()) {
                Ok(store) => break store,
                Err(e) if Instant::now() > deadline => panic!("the store stays open: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let core = spawn(
            Box::new(reopened),
            DataPlaneLink::new(None),
            CoreConfig {
                tunnel_url: None,
                lease_ttl: Duration::from_secs(30),
            },
        )
        .unwrap();
        assert_eq!(call(&core, Command::AuthtokenHashes), expected[1..]);
    }
}
