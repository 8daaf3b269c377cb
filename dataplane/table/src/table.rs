//! Endpoint tables: every endpoint of every account at one version, checked as a
//! whole (SPEC §2 conflicts). Control builds one per change; the data plane decodes,
//! checks and serves it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::endpoint::{Binding, Endpoint, EndpointError, EndpointRecord};
use crate::policy::{Policy, PolicyErrorKind};
use crate::url::{EndpointUrl, Scheme};

/// A checked set of endpoints at a version.
#[derive(Clone, Debug, Default)]
pub struct EndpointTable {
    /// Increases with every change control makes.
    pub version: u64,
    /// Every endpoint, in the order control sent them.
    pub endpoints: Vec<Endpoint>,
}

/// Why a table was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// One endpoint is invalid on its own.
    #[error("{source}")]
    Endpoint {
        /// The endpoint's id.
        id: String,
        /// What is wrong with it.
        source: EndpointError,
    },
    /// Two endpoints share an id.
    #[error("duplicate endpoint id {0}")]
    DuplicateId(String),
    /// Same account, URL and binding without pooling on both.
    #[error("{url} is already used by {other}; enable pooling on both to share it")]
    PoolingConflict {
        /// The later endpoint.
        id: String,
        /// The earlier endpoint.
        other: String,
        /// The shared URL.
        url: String,
    },
    /// Some members of a URL have pooling and some do not.
    #[error("{url} mixes pooled and unpooled endpoints: pooling must be enabled on all or none")]
    MixedPooling {
        /// The offending endpoint.
        id: String,
        /// The shared URL.
        url: String,
    },
    /// A public URL claimed by a second account.
    #[error("{url} belongs to another account")]
    UrlOwnedElsewhere {
        /// The offending endpoint.
        id: String,
        /// The URL.
        url: String,
    },
    /// Two protocols, or two tcp endpoints, on one public port.
    #[error("port {port} already serves {existing}")]
    PortConflict {
        /// The offending endpoint.
        id: String,
        /// The port.
        port: u16,
        /// What the port serves already.
        existing: String,
    },
}

impl TableError {
    /// Whether the cause is a clash with other endpoints (HTTP 409) rather than a
    /// mistake in the endpoint itself (HTTP 400).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            TableError::DuplicateId(_)
                | TableError::PoolingConflict { .. }
                | TableError::MixedPooling { .. }
                | TableError::UrlOwnedElsewhere { .. }
                | TableError::PortConflict { .. }
        )
    }

    /// The endpoint the error is about. Messages leave it out so that an API user, who
    /// has no id for an endpoint being created, reads only what is wrong.
    pub fn endpoint_id(&self) -> &str {
        match self {
            TableError::Endpoint { id, .. }
            | TableError::PoolingConflict { id, .. }
            | TableError::MixedPooling { id, .. }
            | TableError::UrlOwnedElsewhere { id, .. }
            | TableError::PortConflict { id, .. } => id,
            TableError::DuplicateId(id) => id,
        }
    }

    /// A stable code for the cause, used by the API's `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            TableError::Endpoint { source, .. } => match source {
                EndpointError::Url(_) => "ERR_IG_7100",
                EndpointError::UnknownBinding(_) | EndpointError::BindingMismatch { .. } => {
                    "ERR_IG_7101"
                }
                EndpointError::InvalidUpstream(_) => "ERR_IG_7102",
                EndpointError::Policy(p) => match p.kind {
                    PolicyErrorKind::Parse => "ERR_IG_7103",
                    PolicyErrorKind::Invalid => "ERR_IG_7110",
                    PolicyErrorKind::NotTerminating => "ERR_IG_7109",
                },
                EndpointError::InvalidId(_) | EndpointError::MissingAccount(_) => "ERR_IG_7104",
                EndpointError::BodyLimitOnStream(_) => "ERR_IG_7111",
            },
            TableError::DuplicateId(_) => "ERR_IG_7105",
            TableError::PoolingConflict { .. } | TableError::MixedPooling { .. } => "ERR_IG_7106",
            TableError::UrlOwnedElsewhere { .. } => "ERR_IG_7107",
            TableError::PortConflict { .. } => "ERR_IG_7108",
        }
    }
}

impl EndpointTable {
    /// Parses and checks every record, then the table as a whole.
    pub fn from_records(version: u64, records: &[EndpointRecord]) -> Result<Self, TableError> {
        let mut policies: HashMap<&str, Arc<Policy>> = HashMap::new();
        let mut endpoints = Vec::with_capacity(records.len());
        for record in records {
            let cached = policies.get(record.traffic_policy.as_str()).cloned();
            let endpoint =
                Endpoint::from_record(record, cached).map_err(|source| TableError::Endpoint {
                    id: record.id.clone(),
                    source,
                })?;
            policies
                .entry(record.traffic_policy.as_str())
                .or_insert_with(|| endpoint.policy.clone());
            endpoints.push(endpoint);
        }
        let table = EndpointTable { version, endpoints };
        table.check_conflicts()?;
        Ok(table)
    }

    /// The cross-endpoint rules of SPEC §2.
    fn check_conflicts(&self) -> Result<(), TableError> {
        let mut ids = HashSet::with_capacity(self.endpoints.len());
        // (account, url, binding) → first endpoint using it.
        let mut by_key: HashMap<(&str, &EndpointUrl, Binding), &Endpoint> = HashMap::new();
        // public url → owning account.
        let mut owners: HashMap<&EndpointUrl, &str> = HashMap::new();
        // public port → (scheme, tcp url) serving it.
        let mut ports: BTreeMap<u16, (Scheme, &EndpointUrl)> = BTreeMap::new();
        for ep in &self.endpoints {
            if !ids.insert(ep.id.as_str()) {
                return Err(TableError::DuplicateId(ep.id.clone()));
            }
            match by_key.get(&(ep.account.as_str(), &ep.url, ep.binding)) {
                Some(first) if first.pooling_enabled != ep.pooling_enabled => {
                    return Err(TableError::MixedPooling {
                        id: ep.id.clone(),
                        url: ep.url.to_string(),
                    })
                }
                Some(first) if !ep.pooling_enabled => {
                    return Err(TableError::PoolingConflict {
                        id: ep.id.clone(),
                        other: first.id.clone(),
                        url: ep.url.to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    by_key.insert((ep.account.as_str(), &ep.url, ep.binding), ep);
                }
            }
            if ep.binding == Binding::Public {
                let owner = *owners.entry(&ep.url).or_insert(ep.account.as_str());
                if owner != ep.account {
                    return Err(TableError::UrlOwnedElsewhere {
                        id: ep.id.clone(),
                        url: ep.url.to_string(),
                    });
                }
                let (scheme, url) = *ports.entry(ep.url.port).or_insert((ep.url.scheme, &ep.url));
                // tcp routes by port alone, so one tcp URL (a pool at most) per port.
                let clash = scheme != ep.url.scheme || (scheme == Scheme::Tcp && *url != ep.url);
                if clash {
                    return Err(TableError::PortConflict {
                        id: ep.id.clone(),
                        port: ep.url.port,
                        existing: url.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, account: &str, url: &str, pooling: bool) -> EndpointRecord {
        EndpointRecord {
            id: id.into(),
            account: account.into(),
            url: url.into(),
            upstream: "8080".into(),
            pooling_enabled: pooling,
            ..Default::default()
        }
    }

    #[test]
    fn pooling_rules() {
        let ok = [
            rec("ep_a", "x", "https://a.internal", true),
            rec("ep_b", "x", "https://a.internal", true),
        ];
        assert_eq!(
            EndpointTable::from_records(1, &ok).unwrap().endpoints.len(),
            2
        );
        let conflict = [
            rec("ep_a", "x", "https://a.internal", false),
            rec("ep_b", "x", "https://a.internal", false),
        ];
        assert!(matches!(
            EndpointTable::from_records(1, &conflict),
            Err(TableError::PoolingConflict { .. })
        ));
        let mixed = [
            rec("ep_a", "x", "https://a.internal", true),
            rec("ep_b", "x", "https://a.internal", false),
        ];
        assert!(matches!(
            EndpointTable::from_records(1, &mixed),
            Err(TableError::MixedPooling { .. })
        ));
        // Two accounts may both own the same internal URL.
        let accounts = [
            rec("ep_a", "x", "https://a.internal", false),
            rec("ep_b", "y", "https://a.internal", false),
        ];
        EndpointTable::from_records(1, &accounts).unwrap();
    }

    #[test]
    fn public_urls_and_ports() {
        let owned = [
            rec("ep_a", "x", "http://a.example.com", true),
            rec("ep_b", "y", "http://a.example.com", true),
        ];
        assert!(matches!(
            EndpointTable::from_records(1, &owned),
            Err(TableError::UrlOwnedElsewhere { .. })
        ));
        let ports = [
            rec("ep_a", "x", "http://a.example.com:8443", false),
            rec("ep_b", "x", "https://b.example.com:8443", false),
        ];
        assert!(matches!(
            EndpointTable::from_records(1, &ports),
            Err(TableError::PortConflict { .. })
        ));
        let tcp = [
            rec("ep_a", "x", "tcp://a.example.com:5000", false),
            rec("ep_b", "x", "tcp://b.example.com:5000", false),
        ];
        assert!(matches!(
            EndpointTable::from_records(1, &tcp),
            Err(TableError::PortConflict { .. })
        ));
        let dup = [
            rec("ep_a", "x", "http://a.example.com", false),
            rec("ep_a", "x", "http://b.example.com", false),
        ];
        assert!(matches!(
            EndpointTable::from_records(1, &dup),
            Err(TableError::DuplicateId(_))
        ));
    }
}
