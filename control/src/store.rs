//! Durable state: accounts, hashed API keys, endpoints, authtokens (hashed) and the
//! table version, behind a
//! small trait so a distributed store can replace the embedded one later.
//!
//! [`RedbStore`] keeps everything in one redb file; every call that changes something
//! is one durable transaction, so a crash at any moment leaves the last committed state.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::authtoken::StoredAuthtoken;
use crate::endpoint::{HeldBy, StoredEndpoint};

/// An account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    /// `acct_…`.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(String);

impl StoreError {
    fn from(e: impl std::fmt::Display) -> Self {
        StoreError(e.to_string())
    }
}

/// A change to endpoints, applied in one transaction with the new table version.
#[derive(Debug)]
pub enum EndpointChange<'a> {
    /// Create or replace.
    Put(&'a StoredEndpoint),
    /// Delete by id.
    Delete(&'a str),
}

/// What control needs from a store.
pub trait Store: Send {
    /// The account owning the key with this hash.
    fn account_by_key_hash(&self, key_hash: &str) -> Result<Option<Account>, StoreError>;
    /// Creates an account with one key (stored as its hash only).
    fn create_account(&self, account: &Account, key_hash: &str) -> Result<(), StoreError>;
    /// Every endpoint and the version of the table they form.
    fn load(&self) -> Result<(u64, Vec<StoredEndpoint>), StoreError>;
    /// Applies `changes` and sets the table version, atomically and durably.
    fn commit(&self, version: u64, changes: &[EndpointChange<'_>]) -> Result<(), StoreError>;
    /// Every authtoken of every account.
    fn authtokens(&self) -> Result<Vec<StoredAuthtoken>, StoreError>;
    /// Adds an authtoken (its hash only).
    fn create_authtoken(&self, authtoken: &StoredAuthtoken) -> Result<(), StoreError>;
    /// Deletes an authtoken by id; whether it existed.
    fn delete_authtoken(&self, id: &str) -> Result<bool, StoreError>;
    /// Every API key as (SHA-256 hex, account id): tunnel agents may authenticate
    /// with one, so their hashes travel with the table like authtokens.
    fn api_key_hashes(&self) -> Result<Vec<(String, String)>, StoreError>;
}

const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const KEYS: TableDefinition<&str, &str> = TableDefinition::new("api_key_hashes");
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoints");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Authtoken id → [`StoredAuthtoken`] as JSON (account and SHA-256 of the token).
const AUTHTOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("authtokens");

/// The embedded store: one redb file.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens (or creates) `DIR/control.redb`. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::from)?;
        let db = Database::create(dir.join("control.redb")).map_err(StoreError::from)?;
        let txn = db.begin_write().map_err(StoreError::from)?;
        {
            txn.open_table(ACCOUNTS).map_err(StoreError::from)?;
            txn.open_table(KEYS).map_err(StoreError::from)?;
            txn.open_table(ENDPOINTS).map_err(StoreError::from)?;
            txn.open_table(META).map_err(StoreError::from)?;
            txn.open_table(AUTHTOKENS).map_err(StoreError::from)?;
        }
        txn.commit().map_err(StoreError::from)?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn account_by_key_hash(&self, key_hash: &str) -> Result<Option<Account>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        let keys = txn.open_table(KEYS).map_err(StoreError::from)?;
        let Some(account_id) = keys.get(key_hash).map_err(StoreError::from)? else {
            return Ok(None);
        };
        let accounts = txn.open_table(ACCOUNTS).map_err(StoreError::from)?;
        let value = accounts.get(account_id.value()).map_err(StoreError::from)?;
        value
            .map(|v| serde_json::from_slice(v.value()).map_err(StoreError::from))
            .transpose()
    }

    fn create_account(&self, account: &Account, key_hash: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut accounts = txn.open_table(ACCOUNTS).map_err(StoreError::from)?;
            let json = serde_json::to_vec(account).map_err(StoreError::from)?;
            accounts
                .insert(account.id.as_str(), json.as_slice())
                .map_err(StoreError::from)?;
            let mut keys = txn.open_table(KEYS).map_err(StoreError::from)?;
            keys.insert(key_hash, account.id.as_str())
                .map_err(StoreError::from)?;
        }
        txn.commit().map_err(StoreError::from)
    }

    fn load(&self) -> Result<(u64, Vec<StoredEndpoint>), StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        let meta = txn.open_table(META).map_err(StoreError::from)?;
        let version = meta
            .get("version")
            .map_err(StoreError::from)?
            .map_or(0, |v| v.value());
        let table = txn.open_table(ENDPOINTS).map_err(StoreError::from)?;
        let mut endpoints = Vec::new();
        for entry in table.iter().map_err(StoreError::from)? {
            let (_, value) = entry.map_err(StoreError::from)?;
            endpoints.push(read_endpoint(value.value())?);
        }
        Ok((version, endpoints))
    }

    fn commit(&self, version: u64, changes: &[EndpointChange<'_>]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut table = txn.open_table(ENDPOINTS).map_err(StoreError::from)?;
            for change in changes {
                match change {
                    EndpointChange::Put(ep) => {
                        let json = serde_json::to_vec(ep).map_err(StoreError::from)?;
                        table
                            .insert(ep.id.as_str(), json.as_slice())
                            .map_err(StoreError::from)?;
                    }
                    EndpointChange::Delete(id) => {
                        table.remove(*id).map_err(StoreError::from)?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(StoreError::from)?;
            meta.insert("version", version).map_err(StoreError::from)?;
        }
        txn.commit().map_err(StoreError::from)
    }

    fn api_key_hashes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        let keys = txn.open_table(KEYS).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for entry in keys.iter().map_err(StoreError::from)? {
            let (hash, account) = entry.map_err(StoreError::from)?;
            out.push((hash.value().to_string(), account.value().to_string()));
        }
        Ok(out)
    }

    fn authtokens(&self) -> Result<Vec<StoredAuthtoken>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        let table = txn.open_table(AUTHTOKENS).map_err(StoreError::from)?;
        let mut authtokens = Vec::new();
        for entry in table.iter().map_err(StoreError::from)? {
            let (_, value) = entry.map_err(StoreError::from)?;
            authtokens.push(serde_json::from_slice(value.value()).map_err(StoreError::from)?);
        }
        Ok(authtokens)
    }

    fn create_authtoken(&self, authtoken: &StoredAuthtoken) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut table = txn.open_table(AUTHTOKENS).map_err(StoreError::from)?;
            let json = serde_json::to_vec(authtoken).map_err(StoreError::from)?;
            table
                .insert(authtoken.id.as_str(), json.as_slice())
                .map_err(StoreError::from)?;
        }
        txn.commit().map_err(StoreError::from)
    }

    fn delete_authtoken(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let existed = {
            let mut table = txn.open_table(AUTHTOKENS).map_err(StoreError::from)?;
            let removed = table.remove(id).map_err(StoreError::from)?;
            removed.is_some()
        };
        txn.commit().map_err(StoreError::from)?;
        Ok(existed)
    }
}

/// Reads a stored endpoint, also one written before `held_by` existed. Those stores
/// gave every endpoint with an upstream a lease, so such an endpoint reads as held
/// by an agent (it keeps expiring unless renewed, as it did); every other one was
/// static and reads as held by the API.
fn read_endpoint(bytes: &[u8]) -> Result<StoredEndpoint, StoreError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(StoreError::from)?;
    if let Some(fields) = value.as_object_mut() {
        if !fields.contains_key("held_by") {
            let leased = fields.get("upstream_url").is_some_and(|u| !u.is_null());
            let held_by = if leased { HeldBy::Agent } else { HeldBy::Api };
            fields.insert("held_by".into(), held_by.as_str().into());
        }
    }
    serde_json::from_value(value).map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint as stores wrote it before `held_by` existed.
    fn legacy(id: &str, upstream: Option<&str>) -> String {
        serde_json::json!({
            "id": id, "account": "acct_1", "url": "http://a.example.com",
            "binding": "public", "upstream_url": upstream, "traffic_policy": "",
            "pooling_enabled": false, "description": "", "metadata": "",
            "created_at": "2025-01-01T00:00:00.000Z", "updated_at": "2025-01-01T00:00:00.000Z",
        })
        .to_string()
    }

    #[test]
    fn endpoints_stored_before_held_by_read_as_they_behaved() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(ENDPOINTS).unwrap();
            for (id, upstream) in [("ep_1", Some("http://127.0.0.1:9")), ("ep_2", None)] {
                table.insert(id, legacy(id, upstream).as_bytes()).unwrap();
            }
        }
        txn.commit().unwrap();
        let (_, endpoints) = store.load().unwrap();
        let held: Vec<(&str, HeldBy)> = endpoints
            .iter()
            .map(|e| (e.id.as_str(), e.held_by))
            .collect();
        // The one with an upstream was leased, so an agent holds it; the other is static.
        assert_eq!(held, [("ep_1", HeldBy::Agent), ("ep_2", HeldBy::Api)]);
        // Written back, the field is kept as read.
        store
            .commit(1, &[EndpointChange::Put(&endpoints[0])])
            .unwrap();
        assert_eq!(store.load().unwrap().1[0].held_by, HeldBy::Agent);
    }
}
