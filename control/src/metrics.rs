//! Control's own metrics, served as Prometheus text at `GET /metrics` on the API
//! listener: API calls by route and status, table pushes by outcome, leases, and the
//! state of the data plane link. Aggregates only: nothing names an account.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters and gauges shared by the API handlers and the core thread.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    /// (route pattern, method, status) → calls.
    api_calls: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub(crate) pushes_applied: AtomicU64,
    pub(crate) pushes_refused: AtomicU64,
    pub(crate) pushes_undelivered: AtomicU64,
    pub(crate) lease_renewals: AtomicU64,
    pub(crate) lease_expiries: AtomicU64,
    /// Gauges the core sets on every tick.
    pub(crate) endpoints: AtomicU64,
    pub(crate) leases_active: AtomicU64,
    pub(crate) table_version: AtomicU64,
    pub(crate) data_plane_in_sync: AtomicU64,
}

impl ControlMetrics {
    /// Counts one API call.
    pub fn record_call(&self, route: &str, method: &str, status: u16) {
        let mut calls = self.api_calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            &mut out,
            "innergate_control_api_requests_total",
            "counter",
            "Endpoints API calls by route, method and status.",
        );
        for ((route, method, status), count) in self
            .api_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "innergate_control_api_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
            );
        }
        family(
            &mut out,
            "innergate_control_pushes_total",
            "counter",
            "Tables pushed to the data plane, by outcome.",
        );
        for (result, counter) in [
            ("applied", &self.pushes_applied),
            ("refused", &self.pushes_refused),
            ("undelivered", &self.pushes_undelivered),
        ] {
            let _ = writeln!(
                out,
                "innergate_control_pushes_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        let simple = [
            (
                "innergate_control_lease_renewals_total",
                "counter",
                "Agent lease renewals.",
                &self.lease_renewals,
            ),
            (
                "innergate_control_lease_expiries_total",
                "counter",
                "Agent endpoints removed because their lease ran out.",
                &self.lease_expiries,
            ),
            (
                "innergate_control_leases_active",
                "gauge",
                "Agent endpoints holding a lease.",
                &self.leases_active,
            ),
            (
                "innergate_control_endpoints",
                "gauge",
                "Endpoints of every account.",
                &self.endpoints,
            ),
            (
                "innergate_control_table_version",
                "gauge",
                "Version of the committed endpoint table.",
                &self.table_version,
            ),
            (
                "innergate_control_data_plane_in_sync",
                "gauge",
                "1 when the data plane is known to serve the committed table.",
                &self.data_plane_in_sync,
            ),
        ];
        for (name, kind, help, value) in simple {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", get(value));
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
