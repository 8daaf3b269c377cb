//! Which counters each table's rate-limit actions use: kept across tables for actions
//! that did not change, staged so that a refused table changes none.

use std::collections::HashMap;
use std::sync::Arc;

use innergate_table::policy::{Action, ActionId, Phase};
use innergate_table::EndpointTable;
use smallvec::SmallVec;

use super::RateCounters;

/// The counters of one endpoint's rate-limit actions, by action id.
pub(crate) type EndpointLimits = SmallVec<[(ActionId, Arc<RateCounters>); 1]>;

/// Counters by the action they belong to, kept across tables so that a push does not
/// reset a limit whose endpoint and settings did not change.
#[derive(Debug, Default)]
pub(crate) struct RateRegistry {
    counters: HashMap<(String, ActionId, String), Arc<RateCounters>>,
}

impl RateRegistry {
    /// Counters for every rate-limit action of `table` (per endpoint, in table order),
    /// reusing those of actions that did not change, and the registry that keeps
    /// exactly those. Nothing changes here: the caller keeps the new registry only
    /// once the table is served, so a refused table resets no counter.
    pub(crate) fn stage(
        &self,
        table: &EndpointTable,
        workers: usize,
    ) -> (Vec<EndpointLimits>, RateRegistry) {
        let mut kept = HashMap::new();
        let mut by_endpoint = Vec::with_capacity(table.endpoints.len());
        for endpoint in &table.endpoints {
            let mut limits = EndpointLimits::new();
            for (r, rule) in endpoint.policy.phase(Phase::HttpRequest).iter().enumerate() {
                for (a, action) in rule.actions.iter().enumerate() {
                    let Action::RateLimit(limit) = action else {
                        continue;
                    };
                    let id = ActionId::new(Phase::HttpRequest, r, a);
                    let key = (endpoint.id.clone(), id, limit.fingerprint());
                    let counters = self
                        .counters
                        .get(&key)
                        .filter(|c| c.workers() == workers)
                        .cloned()
                        .unwrap_or_else(|| {
                            Arc::new(RateCounters::new(limit.capacity, limit.window_ms, workers))
                        });
                    limits.push((id, counters.clone()));
                    kept.insert(key, counters);
                }
            }
            by_endpoint.push(limits);
        }
        (by_endpoint, RateRegistry { counters: kept })
    }
}
