//! The core's answers to the data plane's tunnel calls. A Bind creates an endpoint
//! held by tunnel sessions through the same checks as an API create (URL, binding,
//! policy, conflicts with the whole table); a rebind after a reconnect keeps the
//! endpoint under its id. Tunnel endpoints live on a lease that the data plane renews
//! while sessions hold them, and go when the last session releases them.

use std::time::Instant;

use innergate_table::tunnel_calls::{BindCall, TunnelAnswer, TunnelCall};

use super::{api_key_credential, normalize, Change, Core};
use crate::endpoint::{now, HeldBy, StoredEndpoint};
use crate::tunnel_agent::AGENT_GROUP;

impl Core {
    pub(super) fn tunnel_call(&mut self, call: TunnelCall) -> TunnelAnswer {
        match call {
            TunnelCall::Bind(bind) => match self.bind(bind) {
                Ok((endpoint_id, url)) => TunnelAnswer::Bound { endpoint_id, url },
                Err(why) => TunnelAnswer::Failed(why),
            },
            TunnelCall::Unbind {
                account,
                endpoint_id,
            } => {
                let owned = self
                    .endpoints
                    .get(&endpoint_id)
                    .is_some_and(|e| e.account == account);
                if owned {
                    self.release(&endpoint_id);
                }
                TunnelAnswer::Done
            }
            TunnelCall::Released { endpoint_ids } => {
                for id in endpoint_ids {
                    self.release(&id);
                }
                TunnelAnswer::Done
            }
            TunnelCall::Held { endpoint_ids } => {
                let now = Instant::now();
                for id in endpoint_ids {
                    if self.tunnel_held(&id) {
                        self.leases.insert(id.clone(), now + self.config.lease_ttl);
                        self.tunnel_held.insert(id, now);
                    }
                }
                TunnelAnswer::Done
            }
            _ => TunnelAnswer::Failed("unknown tunnel call".into()),
        }
    }

    fn tunnel_held(&self, id: &str) -> bool {
        self.endpoints
            .get(id)
            .is_some_and(|e| e.held_by == HeldBy::Tunnel)
    }

    /// Removes a tunnel endpoint that no session holds any more.
    fn release(&mut self, id: &str) {
        if !self.tunnel_held(id) {
            return;
        }
        match self.apply(Change::Delete(id.to_string())) {
            Ok(()) => log::info!("tunnel endpoint {id} removed: no session holds it"),
            Err(e) => log::error!("cannot remove tunnel endpoint {id}: {e}"),
        }
    }

    fn bind(&mut self, bind: BindCall) -> Result<(String, String), String> {
        let token_live = self
            .authtokens
            .get(&bind.authtoken)
            .is_some_and(|t| t.account == bind.account)
            || self
                .api_keys
                .iter()
                .any(|(_, a)| *a == bind.account && api_key_credential(a) == bind.authtoken);
        if !token_live {
            return Err("the session's authtoken was revoked (ERR_IG_4018)".into());
        }
        if !bind.endpoint_id.is_empty() {
            if let Some(existing) = self.endpoints.get(&bind.endpoint_id) {
                // A rebind (the agent reconnected, or opened another session): the
                // endpoint must be this account's tunnel endpoint with the same URL.
                let same_url =
                    crate::endpoint::canonical_url(&bind.url).is_ok_and(|(_, u)| u == existing.url);
                if existing.account != bind.account || existing.held_by != HeldBy::Tunnel {
                    return Err(format!("endpoint {} not found", bind.endpoint_id));
                }
                if !same_url {
                    return Err(format!(
                        "endpoint {} has URL {}, not {}",
                        bind.endpoint_id, existing.url, bind.url
                    ));
                }
                let (id, url) = (existing.id.clone(), existing.url.clone());
                self.hold(&id);
                return Ok((id, url));
            }
        }
        self.drop_orphan(&bind);
        if let Some(existing) = self.same_agent(&bind) {
            let (id, url) = (existing.id.clone(), existing.url.clone());
            self.hold(&id);
            return Ok((id, url));
        }
        let id = if valid_id(&bind.endpoint_id) {
            bind.endpoint_id.clone()
        } else {
            self.ids.next("ep")
        };
        let created_at = now();
        let description = if bind.forwards_to.is_empty() {
            "tunnel".to_string()
        } else {
            format!("tunnel to {}", bind.forwards_to)
        };
        let endpoint = StoredEndpoint {
            id: id.clone(),
            account: bind.account.clone(),
            url: bind.url.clone(),
            binding: String::new(),
            upstream_url: None,
            held_by: HeldBy::Tunnel,
            traffic_policy: bind.traffic_policy.clone(),
            pooling_enabled: bind.pooling_enabled,
            max_request_body_bytes: 0,
            description,
            metadata: bind.metadata.clone(),
            updated_at: created_at.clone(),
            created_at,
        };
        let bindings = (!bind.binding.is_empty()).then(|| vec![bind.binding.clone()]);
        let endpoint = normalize(endpoint, bindings.as_deref()).map_err(|e| e.to_string())?;
        let url = endpoint.url.clone();
        self.apply(Change::Put(Box::new(endpoint)))
            .map_err(|e| e.to_string())?;
        self.hold(&id);
        log::info!("tunnel endpoint {id} bound at {url}");
        Ok((id, url))
    }
}

/// How long a tunnel endpoint may go unclaimed (no Bind, no renewal from the data
/// plane, which renews every 5 s) before a new agent of its account may take its URL.
const ORPHANED: std::time::Duration = std::time::Duration::from_secs(12);

impl Core {
    /// Notes that a session holds `id`: its lease starts again.
    fn hold(&mut self, id: &str) {
        let now = Instant::now();
        self.leases
            .insert(id.to_string(), now + self.config.lease_ttl);
        self.tunnel_held.insert(id.to_string(), now);
    }

    /// Removes this account's tunnel endpoint at the Bind's URL that no session has
    /// claimed for a while (its gateway restarted, its agent is gone for good): a new
    /// agent takes the URL over instead of waiting for the lease to run out.
    fn drop_orphan(&mut self, bind: &BindCall) {
        let Ok((_, url)) = crate::endpoint::canonical_url(&bind.url) else {
            return;
        };
        let orphan = self
            .endpoints
            .values()
            .find(|e| {
                e.account == bind.account
                    && e.held_by == HeldBy::Tunnel
                    && e.url == url
                    && !e.pooling_enabled
                    && self
                        .tunnel_held
                        .get(&e.id)
                        .is_some_and(|t| t.elapsed() > ORPHANED)
            })
            .map(|e| e.id.clone());
        if let Some(id) = orphan {
            log::info!("tunnel endpoint {id}: unclaimed, replaced by a new agent's Bind");
            self.release(&id);
        }
    }

    /// The endpoint another session of the same innergate agent already bound: that
    /// agent opens a session per data plane worker and binds its endpoint on each,
    /// marking them with one group in the metadata.
    fn same_agent(&self, bind: &BindCall) -> Option<&StoredEndpoint> {
        if !bind.metadata.starts_with(AGENT_GROUP) {
            return None;
        }
        let url = crate::endpoint::canonical_url(&bind.url).ok()?.1;
        self.endpoints.values().find(|e| {
            e.account == bind.account
                && e.held_by == HeldBy::Tunnel
                && e.metadata == bind.metadata
                && e.url == url
        })
    }
}

/// Whether an id an agent asks to keep is one this control could have made.
fn valid_id(id: &str) -> bool {
    id.len() > 3
        && id.len() <= 64
        && id.starts_with("ep_")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
