//! Counters for `/metrics`: kept per worker in plain cells (no locks, no atomics on
//! the request path) and summed when scraped, by asking each worker for a snapshot.
//! Per-endpoint counters live in slots that stay stable across tables.

use std::collections::HashMap;
use std::fmt::Write;

use crate::error::ProxyError;

/// Upper bounds of the latency histogram's buckets, in microseconds (the last bucket,
/// `+Inf`, is implicit). From 250 µs, where a proxied loopback request sits, to 10 s.
pub(crate) const LATENCY_BOUNDS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// The forward-internal failures counted by code, in the order of [`FORWARD_FAILURES`].
pub(crate) const FORWARD_FAILURES: [ProxyError; 5] = [
    ProxyError::ForwardTargetMissing,
    ProxyError::ForwardWrongFamily,
    ProxyError::ForwardLoop,
    ProxyError::ForwardTooManyHops,
    ProxyError::ForwardInvalidTarget,
];

/// Counters of one endpoint on one worker.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EndpointStats {
    /// Responses by status class: 1xx … 5xx.
    pub(crate) responses: [u64; 5],
    /// Requests by latency bucket (not cumulative; the last is +Inf).
    pub(crate) latency: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub(crate) latency_sum_us: u64,
    /// Bytes read from and written to clients (heads and bodies).
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// forward-internal hops taken by requests that entered at this endpoint.
    pub(crate) forward_hops: u64,
    /// forward-internal failures, by [`FORWARD_FAILURES`] index.
    pub(crate) forward_failures: [u64; FORWARD_FAILURES.len()],
    /// Exchanges that ended without a response (close-connection, a refused
    /// on_tcp_connect, a client gone).
    pub(crate) closed: u64,
}

/// One finished HTTP exchange, as counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exchange {
    pub(crate) status: u16,
    pub(crate) duration_us: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) hops: usize,
    pub(crate) forward_failure: Option<ProxyError>,
}

impl EndpointStats {
    fn add(&mut self, other: &EndpointStats) {
        add_all(&mut self.responses, &other.responses);
        add_all(&mut self.latency, &other.latency);
        add_all(&mut self.forward_failures, &other.forward_failures);
        self.latency_sum_us += other.latency_sum_us;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.forward_hops += other.forward_hops;
        self.closed += other.closed;
    }
}

fn add_all(mine: &mut [u64], theirs: &[u64]) {
    for (a, b) in mine.iter_mut().zip(theirs) {
        *a += b;
    }
}

/// Counters of one worker.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerStats {
    pub(crate) connections_total: u64,
    pub(crate) connections_active: u64,
    pub(crate) upstream_connect_errors: u64,
    /// Streams opened on another worker's tunnel session (a foreign SDK's single
    /// session serving requests that arrived elsewhere).
    pub(crate) tunnel_handovers: u64,
    /// Tunnel sessions open now (filled in when a snapshot is taken).
    pub(crate) tunnel_sessions: u64,
    /// Panics confined to the connection that hit them.
    pub(crate) panics: u64,
    /// Responses to requests no endpoint took (unreadable, or no endpoint serves the
    /// host), by status class.
    pub(crate) unrouted: [u64; 5],
    /// By endpoint slot.
    pub(crate) endpoints: Vec<EndpointStats>,
}

impl WorkerStats {
    fn endpoint(&mut self, slot: usize) -> &mut EndpointStats {
        if self.endpoints.len() <= slot {
            self.endpoints.resize(slot + 1, EndpointStats::default());
        }
        &mut self.endpoints[slot]
    }

    /// Counts an HTTP exchange that entered at the endpoint of `slot` (`None`: no
    /// endpoint took it). Status 0: it ended without a response.
    pub(crate) fn record_exchange(&mut self, slot: Option<usize>, x: &Exchange) {
        let class = usize::from(x.status / 100).clamp(1, 5) - 1;
        let Some(slot) = slot else {
            if x.status != 0 {
                self.unrouted[class] += 1;
            }
            return;
        };
        let e = self.endpoint(slot);
        if x.status == 0 {
            e.closed += 1;
        } else {
            e.responses[class] += 1;
        }
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < x.duration_us);
        e.latency[bucket] += 1;
        e.latency_sum_us += x.duration_us;
        e.bytes_in += x.bytes_in;
        e.bytes_out += x.bytes_out;
        e.forward_hops += x.hops as u64;
        if let Some(failure) = x.forward_failure {
            if let Some(i) = FORWARD_FAILURES.iter().position(|&f| f == failure) {
                e.forward_failures[i] += 1;
            }
        }
    }

    /// Counts the bytes of a tcp or tls byte stream of the endpoint of `slot`.
    pub(crate) fn record_stream(&mut self, slot: usize, bytes_in: u64, bytes_out: u64) {
        let e = self.endpoint(slot);
        e.bytes_in += bytes_in;
        e.bytes_out += bytes_out;
    }

    pub(crate) fn add(&mut self, other: &WorkerStats) {
        self.connections_total += other.connections_total;
        self.connections_active += other.connections_active;
        self.upstream_connect_errors += other.upstream_connect_errors;
        self.tunnel_handovers += other.tunnel_handovers;
        self.tunnel_sessions += other.tunnel_sessions;
        self.panics += other.panics;
        add_all(&mut self.unrouted, &other.unrouted);
        if self.endpoints.len() < other.endpoints.len() {
            self.endpoints
                .resize(other.endpoints.len(), EndpointStats::default());
        }
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            mine.add(theirs);
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

/// The slots of a table's endpoints (in table order), and the labels that change if
/// the table is served: computed without touching [`StatsSlots`], applied by
/// [`StatsSlots::apply`] once the table is served.
#[derive(Debug, Default)]
pub(crate) struct SlotPlan {
    slots: Vec<usize>,
    /// New slots, from `StatsSlots::labels.len()` on: (id, url).
    added: Vec<(String, String)>,
    /// Existing slots whose endpoint moved to another URL.
    relabeled: Vec<(usize, String)>,
}

impl SlotPlan {
    /// The slot of the table's endpoint `index`.
    pub(crate) fn slot(&self, index: usize) -> usize {
        self.slots[index]
    }
}

impl StatsSlots {
    /// Slots for endpoints given as (id, url), allocating for new ids after the
    /// existing ones.
    pub(crate) fn plan<'a>(&self, endpoints: impl Iterator<Item = (&'a str, String)>) -> SlotPlan {
        let mut plan = SlotPlan::default();
        let mut new_ids: HashMap<&str, usize> = HashMap::new();
        for (id, url) in endpoints {
            let slot = match self.by_id.get(id) {
                Some(&slot) => {
                    if self.labels[slot].1 != url {
                        plan.relabeled.push((slot, url));
                    }
                    slot
                }
                None => *new_ids.entry(id).or_insert_with(|| {
                    plan.added.push((id.to_string(), url));
                    self.labels.len() + plan.added.len() - 1
                }),
            };
            plan.slots.push(slot);
        }
        plan
    }

    /// Makes a planned table's slots and labels current.
    pub(crate) fn apply(&mut self, plan: SlotPlan) {
        for (slot, url) in plan.relabeled {
            self.labels[slot].1 = url;
        }
        for (id, url) in plan.added {
            self.by_id.insert(id.clone(), self.labels.len());
            self.labels.push((id, url));
        }
    }

    pub(crate) fn labels(&self, slot: usize) -> Option<&(String, String)> {
        self.labels.get(slot)
    }
}

/// The HELP and TYPE lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Prometheus text for summed counters and the table state.
pub(crate) fn render(
    total: &WorkerStats,
    slots: &StatsSlots,
    version: u64,
    age_secs: f64,
) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "innergate_table_version",
        "gauge",
        "Version of the endpoint table served.",
    );
    let _ = writeln!(out, "innergate_table_version {version}");
    family(
        &mut out,
        "innergate_table_age_seconds",
        "gauge",
        "Seconds since the table was applied.",
    );
    let _ = writeln!(out, "innergate_table_age_seconds {age_secs:.3}");
    family(
        &mut out,
        "innergate_connections_active",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(
        out,
        "innergate_connections_active {}",
        total.connections_active
    );
    family(
        &mut out,
        "innergate_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        out,
        "innergate_connections_total {}",
        total.connections_total
    );
    family(
        &mut out,
        "innergate_upstream_connect_errors_total",
        "counter",
        "Failed connects to upstreams.",
    );
    let _ = writeln!(
        out,
        "innergate_upstream_connect_errors_total {}",
        total.upstream_connect_errors
    );
    family(
        &mut out,
        "innergate_tunnel_sessions",
        "gauge",
        "Agent tunnel sessions open.",
    );
    let _ = writeln!(out, "innergate_tunnel_sessions {}", total.tunnel_sessions);
    family(
        &mut out,
        "innergate_tunnel_handovers_total",
        "counter",
        "Tunnel streams opened on another worker's session (hand-overs).",
    );
    let _ = writeln!(
        out,
        "innergate_tunnel_handovers_total {}",
        total.tunnel_handovers
    );
    family(
        &mut out,
        "innergate_panics_total",
        "counter",
        "Panics in the data plane's own code, each confined to the connection that hit it.",
    );
    let _ = writeln!(out, "innergate_panics_total {}", total.panics);
    family(
        &mut out,
        "innergate_http_unrouted_responses_total",
        "counter",
        "HTTP responses to requests no endpoint took (unreadable, or no endpoint serves the host), by status class.",
    );
    for (class, count) in total.unrouted.iter().enumerate() {
        if *count > 0 {
            let _ = writeln!(
                out,
                "innergate_http_unrouted_responses_total{{class=\"{}xx\"}} {count}",
                class + 1
            );
        }
    }

    // Per endpoint: (slot, `endpoint_id="…",url="…"`, counters).
    let endpoints: Vec<(String, &EndpointStats)> = total
        .endpoints
        .iter()
        .enumerate()
        .filter_map(|(slot, stats)| {
            let (id, url) = slots.labels(slot)?;
            Some((format!("endpoint_id=\"{id}\",url=\"{url}\""), stats))
        })
        .collect();

    family(
        &mut out,
        "innergate_http_responses_total",
        "counter",
        "HTTP responses by endpoint (where the request entered) and status class.",
    );
    for (labels, stats) in &endpoints {
        for (class, count) in stats.responses.iter().enumerate() {
            if *count > 0 {
                let _ = writeln!(
                    out,
                    "innergate_http_responses_total{{{labels},class=\"{}xx\"}} {count}",
                    class + 1
                );
            }
        }
    }
    family(
        &mut out,
        "innergate_http_request_duration_seconds",
        "histogram",
        "From a complete request head to the last response byte written.",
    );
    for (labels, stats) in &endpoints {
        let count: u64 = stats.latency.iter().sum();
        if count == 0 {
            continue;
        }
        let mut cumulative = 0;
        for (i, n) in stats.latency.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BOUNDS_US
                .get(i)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(
                out,
                "innergate_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "innergate_http_request_duration_seconds_sum{{{labels}}} {:.6}",
            stats.latency_sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "innergate_http_request_duration_seconds_count{{{labels}}} {count}"
        );
    }
    // One plain counter per endpoint each.
    type Counter = fn(&EndpointStats) -> u64;
    let counters: [(&str, &str, Counter); 4] = [
        (
            "innergate_bytes_received_total",
            "Bytes read from clients (HTTP heads and bodies, tcp/tls streams).",
            |e| e.bytes_in,
        ),
        (
            "innergate_bytes_sent_total",
            "Bytes written to clients (HTTP heads and bodies, tcp/tls streams).",
            |e| e.bytes_out,
        ),
        (
            "innergate_forward_internal_hops_total",
            "forward-internal hops taken by requests that entered at the endpoint.",
            |e| e.forward_hops,
        ),
        (
            "innergate_http_closed_without_response_total",
            "HTTP exchanges that ended without a response (close-connection, a refused on_tcp_connect, a client gone).",
            |e| e.closed,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        for (labels, stats) in &endpoints {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(stats));
        }
    }
    family(
        &mut out,
        "innergate_forward_internal_failures_total",
        "counter",
        "forward-internal failures by innergate-error-code.",
    );
    for (labels, stats) in &endpoints {
        for (i, count) in stats.forward_failures.iter().enumerate() {
            if *count > 0 {
                let code = FORWARD_FAILURES[i].code();
                let _ = writeln!(
                    out,
                    "innergate_forward_internal_failures_total{{{labels},code=\"{code}\"}} {count}"
                );
            }
        }
    }
    out
}
