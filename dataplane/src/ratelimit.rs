//! Counters for `rate-limit`, shared by the workers without locks.
//!
//! Every worker owns a region of slots that only it writes (plain stores); a request
//! reads the slots of its bucket in every region. Each slot packs a fixed-window index
//! and a count; two slots per bucket hold the current and the previous window, from
//! which [`Window`] estimates the sliding count.
//!
//! Tolerance, as documented: requests that arrive at the same instant on different
//! workers may each see the last free place, so the limit can be exceeded by at most
//! `workers − 1`; keys that share one of the [`BUCKETS`] buckets count together, which
//! only ever makes the limit stricter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use innergate_table::policy::actions::rate_limit::{RateLimit, Window};
use innergate_table::policy::{Action, Phase};
use innergate_table::EndpointTable;

/// Buckets per limit and worker.
pub(crate) const BUCKETS: usize = 1024;

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const INDEX_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

fn pack(index: u64, count: u64) -> u64 {
    ((index & INDEX_MASK) << COUNT_BITS) | (count & COUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> COUNT_BITS, v & COUNT_MASK)
}

/// Milliseconds on one clock shared by all workers.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The counters of one `rate-limit` action of one endpoint.
#[derive(Debug)]
pub(crate) struct RateCounters {
    capacity: u64,
    window_ms: u64,
    workers: usize,
    slots: Box<[AtomicU64]>,
}

impl RateCounters {
    fn new(limit: &RateLimit, workers: usize) -> Self {
        RateCounters {
            capacity: limit.capacity,
            window_ms: limit.window_ms,
            workers,
            slots: (0..workers * BUCKETS * 2)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, worker: usize, bucket: usize, parity: u64) -> &AtomicU64 {
        &self.slots[(worker * BUCKETS + bucket) * 2 + parity as usize]
    }

    /// Counts a request of `bucket` on `worker`, or refuses it with the seconds until
    /// one would pass.
    pub(crate) fn admit(&self, worker: usize, bucket: u64, now_ms: u64) -> Result<(), u64> {
        let window = Window::at(now_ms, self.window_ms);
        let b = (bucket % BUCKETS as u64) as usize;
        let (index, previous_index) = (
            window.index & INDEX_MASK,
            window.index.wrapping_sub(1) & INDEX_MASK,
        );
        let (mut current, mut previous) = (0, 0);
        for w in 0..self.workers {
            for parity in 0..2 {
                let (i, count) = unpack(self.slot(w, b, parity).load(Ordering::Relaxed));
                if count > 0 && i == index {
                    current += count;
                } else if count > 0 && i == previous_index {
                    previous += count;
                }
            }
        }
        if window.estimate(current, previous) + 1.0 > self.capacity as f64 {
            return Err(window.retry_after_secs(current, previous, self.capacity));
        }
        // Only this worker writes its slots: a load and a store suffice.
        let mine = self.slot(worker % self.workers, b, window.index % 2);
        let (i, count) = unpack(mine.load(Ordering::Relaxed));
        let next = if i == index { count + 1 } else { 1 };
        mine.store(pack(window.index, next), Ordering::Relaxed);
        Ok(())
    }
}

/// Counters by the action they belong to, kept across tables so that a push does not
/// reset a limit whose endpoint and settings did not change.
#[derive(Debug, Default)]
pub(crate) struct RateRegistry {
    counters: HashMap<String, Arc<RateCounters>>,
}

impl RateRegistry {
    /// Counters for every rate-limit action of `table`, by endpoint index and action
    /// address; counters of actions no longer present are dropped.
    pub(crate) fn attach(
        &mut self,
        table: &EndpointTable,
        workers: usize,
    ) -> crate::fast_map::FastMap<(u32, usize), Arc<RateCounters>> {
        let mut kept = HashMap::new();
        let mut by_action = crate::fast_map::FastMap::default();
        for (idx, endpoint) in table.endpoints.iter().enumerate() {
            for (r, rule) in endpoint.policy.phase(Phase::HttpRequest).iter().enumerate() {
                for (a, action) in rule.actions.iter().enumerate() {
                    let Action::RateLimit(limit) = action else {
                        continue;
                    };
                    let key = format!("{}/{r}/{a}/{}", endpoint.id, limit.fingerprint());
                    let counters = self
                        .counters
                        .get(&key)
                        .filter(|c| c.workers == workers)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(RateCounters::new(limit, workers)));
                    by_action.insert(
                        (idx as u32, limit as *const RateLimit as usize),
                        counters.clone(),
                    );
                    kept.insert(key, counters);
                }
            }
        }
        self.counters = kept;
        by_action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use innergate_table::policy::actions::rate_limit::RateLimitConfig;

    fn counters(capacity: u64, workers: usize) -> RateCounters {
        let limit = RateLimit::compile(
            RateLimitConfig {
                capacity,
                rate: "10s".into(),
                bucket_key: vec![],
            },
            Phase::HttpRequest,
        )
        .unwrap();
        RateCounters::new(&limit, workers)
    }

    #[test]
    fn the_limit_holds_across_workers_and_slides() {
        let c = counters(10, 2);
        let t = 100_000;
        for i in 0..10 {
            assert!(c.admit(i % 2, 7, t).is_ok(), "request {i}");
        }
        assert!(c.admit(0, 7, t).is_err());
        assert!(c.admit(1, 7, t).is_err());
        assert!(c.admit(0, 8, t).is_ok(), "another bucket has its own count");
        // Half a window later half of the previous window still counts.
        let later = t + 10_000 + 5_000;
        assert!(c.admit(0, 7, later).is_ok());
        let retry = c.admit(0, 7, t + 1).unwrap_err();
        assert!((1..=10).contains(&retry), "{retry}");
        // Two windows later everything is free again.
        for _ in 0..10 {
            assert!(c.admit(1, 7, t + 30_000).is_ok());
        }
    }
}
