//! The load the bench puts on a system: wrk for saturation, its own HTTP client for a
//! fixed request rate (and for quick runs that need nothing installed), byte streams
//! for tcp and tls, and idle connections.

pub mod bulk;
pub mod client;
pub mod idle;
pub mod wrk;

use serde::Serialize;

/// Percentiles of the latency curve every HTTP load reports (the plot's points).
pub const CURVE: [f64; 12] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// What an HTTP load measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpResult {
    /// Responses received.
    pub requests: u64,
    /// How long the load ran.
    pub seconds: f64,
    /// Failed connections, reads, writes, timeouts and non-2xx/3xx answers.
    pub errors: u64,
    /// (percentile, milliseconds) at each of [`CURVE`].
    pub latency_ms: Vec<(f64, f64)>,
}

impl HttpResult {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The latency at `percentile` (one of [`CURVE`]), in milliseconds.
    pub fn latency(&self, percentile: f64) -> f64 {
        self.latency_ms
            .iter()
            .find(|(p, _)| (*p - percentile).abs() < 1e-9)
            .map_or(f64::NAN, |(_, ms)| *ms)
    }
}
