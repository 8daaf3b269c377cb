//! Counters for `/metrics`: kept per worker in plain cells (no locks, no atomics on
//! the request path) and summed when scraped, by asking each worker for a snapshot.
//! Per-endpoint counters live in slots that stay stable across tables.

use std::collections::HashMap;

/// Counters of one endpoint on one worker.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EndpointStats {
    /// Responses by status class: 1xx … 5xx.
    pub(crate) responses: [u64; 5],
}

/// Counters of one worker.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerStats {
    pub(crate) connections_total: u64,
    pub(crate) connections_active: u64,
    pub(crate) upstream_connect_errors: u64,
    /// By endpoint slot.
    pub(crate) endpoints: Vec<EndpointStats>,
}

impl WorkerStats {
    pub(crate) fn record_response(&mut self, slot: usize, status: u16) {
        if self.endpoints.len() <= slot {
            self.endpoints.resize(slot + 1, EndpointStats::default());
        }
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.endpoints[slot].responses[class] += 1;
    }

    pub(crate) fn add(&mut self, other: &WorkerStats) {
        self.connections_total += other.connections_total;
        self.connections_active += other.connections_active;
        self.upstream_connect_errors += other.upstream_connect_errors;
        if self.endpoints.len() < other.endpoints.len() {
            self.endpoints
                .resize(other.endpoints.len(), EndpointStats::default());
        }
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            for (a, b) in mine.responses.iter_mut().zip(theirs.responses) {
                *a += b;
            }
        }
    }
}

/// Stable slots by endpoint id, and the labels of each slot.
#[derive(Debug, Default)]
pub(crate) struct StatsSlots {
    by_id: HashMap<String, usize>,
    /// Slot → (endpoint id, url).
    labels: Vec<(String, String)>,
}

impl StatsSlots {
    /// The slot of an endpoint, allocated on first sight.
    pub(crate) fn slot(&mut self, id: &str, url: &str) -> usize {
        if let Some(&slot) = self.by_id.get(id) {
            self.labels[slot].1 = url.to_string();
            return slot;
        }
        let slot = self.labels.len();
        self.by_id.insert(id.to_string(), slot);
        self.labels.push((id.to_string(), url.to_string()));
        slot
    }

    pub(crate) fn labels(&self, slot: usize) -> Option<&(String, String)> {
        self.labels.get(slot)
    }
}

/// Prometheus text for summed counters and the table state.
pub(crate) fn render(
    total: &WorkerStats,
    slots: &StatsSlots,
    version: u64,
    age_secs: f64,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP innergate_table_version Version of the endpoint table served."
    );
    let _ = writeln!(out, "# TYPE innergate_table_version gauge");
    let _ = writeln!(out, "innergate_table_version {version}");
    let _ = writeln!(
        out,
        "# HELP innergate_table_age_seconds Seconds since the table was applied."
    );
    let _ = writeln!(out, "# TYPE innergate_table_age_seconds gauge");
    let _ = writeln!(out, "innergate_table_age_seconds {age_secs:.3}");
    let _ = writeln!(
        out,
        "# HELP innergate_connections_active Client connections open now."
    );
    let _ = writeln!(out, "# TYPE innergate_connections_active gauge");
    let _ = writeln!(
        out,
        "innergate_connections_active {}",
        total.connections_active
    );
    let _ = writeln!(
        out,
        "# HELP innergate_connections_total Client connections accepted."
    );
    let _ = writeln!(out, "# TYPE innergate_connections_total counter");
    let _ = writeln!(
        out,
        "innergate_connections_total {}",
        total.connections_total
    );
    let _ = writeln!(
        out,
        "# HELP innergate_upstream_connect_errors_total Failed connects to upstreams."
    );
    let _ = writeln!(
        out,
        "# TYPE innergate_upstream_connect_errors_total counter"
    );
    let _ = writeln!(
        out,
        "innergate_upstream_connect_errors_total {}",
        total.upstream_connect_errors
    );
    let _ = writeln!(
        out,
        "# HELP innergate_http_responses_total HTTP responses by endpoint and status class."
    );
    let _ = writeln!(out, "# TYPE innergate_http_responses_total counter");
    for (slot, stats) in total.endpoints.iter().enumerate() {
        let Some((id, url)) = slots.labels(slot) else {
            continue;
        };
        for (class, count) in stats.responses.iter().enumerate() {
            if *count > 0 {
                let _ = writeln!(
                    out,
                    "innergate_http_responses_total{{endpoint_id=\"{id}\",url=\"{url}\",class=\"{}xx\"}} {count}",
                    class + 1
                );
            }
        }
    }
    out
}
