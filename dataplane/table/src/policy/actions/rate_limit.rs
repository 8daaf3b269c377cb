//! `rate-limit`: at most `capacity` requests per `rate` window for each bucket (the
//! rendered `bucket_key` expressions); above it, 429 with Retry-After.
//!
//! The window slides: the count is this window's requests plus the previous window's
//! weighted by how much of it still overlaps, the approximation proxies commonly use.
//! The counters themselves live in the data plane ([`Window`] is their arithmetic).

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::Expression;
use crate::policy::response::LocalResponse;
use crate::policy::Phase;

/// How requests are counted: the hosted service documents one algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// This window's count plus the previous window's, weighted by its overlap.
    #[default]
    SlidingWindow,
}

/// Config of `rate-limit` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// A name for the limit (the hosted service requires one; innergate does not).
    #[serde(default)]
    pub name: Option<String>,
    /// `sliding_window`, the only one (and the default).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `false`: count and record the result (`actions.ngrok.rate_limit.*`) but let
    /// requests over the limit pass.
    #[serde(default = "super::enforced")]
    pub enforce: bool,
    /// Requests allowed per window.
    pub capacity: u64,
    /// The window, such as `60s` or `1m`.
    pub rate: String,
    /// Expressions whose values, together, name the bucket; none: one bucket.
    #[serde(default)]
    pub bucket_key: Vec<String>,
}

/// `rate-limit`, compiled.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub capacity: u64,
    /// The window in milliseconds.
    pub window_ms: u64,
    bucket_key: Vec<Expression>,
    /// Its name, when it has one.
    pub name: Option<String>,
    enforce: bool,
}

impl PartialEq for RateLimit {
    fn eq(&self, other: &Self) -> bool {
        self.capacity == other.capacity
            && self.window_ms == other.window_ms
            && self.name == other.name
            && self.enforce == other.enforce
            && self.bucket_key.len() == other.bucket_key.len()
            && self
                .bucket_key
                .iter()
                .zip(&other.bucket_key)
                .all(|(a, b)| a.source() == b.source())
    }
}

impl Eq for RateLimit {}

impl RateLimit {
    /// Checks the numbers and compiles the key expressions.
    pub fn new(config: RateLimitConfig, phase: Phase) -> Result<Self, String> {
        if config.name.as_ref().is_some_and(|n| n.len() >= 1024) {
            return Err("name must be shorter than 1024 characters".into());
        }
        if config.bucket_key.len() > 10 {
            return Err("bucket_key holds at most 10 expressions".into());
        }
        if config.capacity == 0 || config.capacity > (1 << 39) {
            return Err("capacity must be between 1 and 2^39".into());
        }
        let window =
            crate::units::parse_duration(&config.rate).map_err(|e| format!("rate: {e}"))?;
        let window_ms = window.as_millis() as u64;
        if !(1_000..=86_400_000).contains(&window_ms) {
            return Err("rate must be between 1s and 24h".into());
        }
        let bucket_key = config
            .bucket_key
            .iter()
            .enumerate()
            .map(|(i, source)| {
                Expression::compile_any(source, phase)
                    .map_err(|e| format!("bucket_key[{i}]: `{source}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(RateLimit {
            capacity: config.capacity,
            window_ms,
            bucket_key,
            name: config.name,
            enforce: config.enforce,
        })
    }

    /// A stable text of the settings, so counters survive a table change that keeps
    /// them.
    pub fn fingerprint(&self) -> String {
        let keys: Vec<&str> = self.bucket_key.iter().map(Expression::source).collect();
        format!(
            "{}/{}ms/{}",
            self.capacity,
            self.window_ms,
            keys.join("\u{1f}")
        )
    }

    /// The key of this request: the values of the `bucket_key` expressions, each
    /// followed by a unit separator (so `a`,`bc` and `ab`,`c` differ). Counted exactly,
    /// never folded into a shared bucket.
    pub fn key(&self, x: &dyn Exchange, out: &mut String) {
        let facts = x.facts();
        out.clear();
        for key in &self.bucket_key {
            if let Ok(value) = key.eval(facts) {
                value.write_to(facts, out);
            }
            out.push(KEY_SEPARATOR);
        }
    }
}

/// Ends each value of a bucket key.
const KEY_SEPARATOR: char = '\u{1f}';

/// The code of its refusal.
pub const LIMITED: &str = "ERR_IG_3303";

impl PolicyAction for RateLimit {
    type Config = RateLimitConfig;

    fn compile(config: RateLimitConfig, phase: Phase) -> Result<Self, String> {
        RateLimit::new(config, phase)
    }

    /// Counts the request under its key in the data plane's counters for this action;
    /// above the capacity, 429 with Retry-After.
    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        thread_local! {
            // The key of the request being counted: one buffer per thread, reused.
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let admitted = KEY.with_borrow_mut(|key| {
            self.key(x, key);
            let admitted = x.admit(key.as_bytes());
            if let Some(results) = x.results() {
                // Results show the key's values joined by commas.
                let result = &mut results.rate_limit;
                result.limited = admitted.is_err();
                result.bucket_key.clear();
                let values = key.strip_suffix(KEY_SEPARATOR).unwrap_or(key);
                for (i, value) in values.split(KEY_SEPARATOR).enumerate() {
                    if i > 0 {
                        result.bucket_key.push(',');
                    }
                    result.bucket_key.push_str(value);
                }
            }
            admitted
        });
        match admitted {
            Ok(()) => Verdict::Continue,
            Err(_) if !self.enforce => Verdict::Continue,
            Err(retry_after) => Verdict::Respond(
                LocalResponse::refusal(429, LIMITED, "rate limit exceeded\n")
                    .header("retry-after", retry_after.to_string()),
            ),
        }
    }
}

/// The sliding-window arithmetic over two fixed windows.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// The index of the current fixed window.
    pub index: u64,
    /// How far into it we are, in milliseconds.
    pub into_ms: u64,
    /// Its length.
    pub length_ms: u64,
}

impl Window {
    /// The window `now_ms` (since any fixed epoch) falls in.
    pub fn at(now_ms: u64, length_ms: u64) -> Self {
        Window {
            index: now_ms / length_ms,
            into_ms: now_ms % length_ms,
            length_ms,
        }
    }

    /// The estimated count over the last `length_ms`: the current window's count plus
    /// the previous one's, weighted by their overlap.
    pub fn estimate(&self, current: u64, previous: u64) -> f64 {
        let overlap = 1.0 - self.into_ms as f64 / self.length_ms as f64;
        current as f64 + previous as f64 * overlap
    }

    /// Seconds until a request would pass, for Retry-After (at least 1).
    pub fn retry_after_secs(&self, current: u64, previous: u64, capacity: u64) -> u64 {
        // The estimate falls as the previous window slides out; if the current window
        // alone is full, only its end helps.
        let to_end_ms = self.length_ms - self.into_ms;
        let wait_ms = if current >= capacity || previous == 0 {
            to_end_ms
        } else {
            let excess = self.estimate(current, previous) + 1.0 - capacity as f64;
            let per_ms = previous as f64 / self.length_ms as f64;
            ((excess / per_ms).ceil() as u64).min(to_end_ms)
        };
        wait_ms.div_ceil(1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window() {
        let w = Window::at(90_000, 60_000);
        assert_eq!((w.index, w.into_ms), (1, 30_000));
        assert_eq!(w.estimate(10, 20), 20.0);
        assert_eq!(w.retry_after_secs(10, 0, 10), 30);
        assert!(w.retry_after_secs(5, 20, 10) <= 30);
        assert!(w.retry_after_secs(5, 20, 10) >= 1);
    }
}
