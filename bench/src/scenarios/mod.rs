//! The scenarios of BENCH.md, one file each, and what they share: the options of a
//! run, the backend, the certificate, the systems under test and the loads.

mod connections;
mod forward_internal;
mod https;
mod policy;
mod proxy;
mod table_scale;
mod tcp;
mod tunnel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::backend::Backend;
use crate::certs::Certs;
use crate::host::{CpuTime, Pinning};
use crate::load::client::Load;
use crate::load::wrk::Wrk;
use crate::load::HttpResult;
use crate::report::{metric, ScenarioResult};
use crate::systems::haproxy::{self, Haproxy};
use crate::systems::innergate::{self, DataPlane};
use crate::systems::nginx::{self, Nginx};
use crate::systems::Context;

/// A scenario: its name on the command line and what runs it.
pub type Scenario = (&'static str, fn(&Bench) -> Result<ScenarioResult>);

/// Every scenario, in BENCH.md's order.
pub const ALL: [Scenario; 8] = [
    ("http-proxy", proxy::run),
    ("forward-internal", forward_internal::run),
    ("policy", policy::run),
    ("https", https::run),
    ("tcp", tcp::run),
    ("connections", connections::run),
    ("table-scale", table_scale::run),
    ("tunnel", tunnel::run),
];

/// How a run measures.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds per HTTP load.
    pub duration: Duration,
    /// Repetitions of every measurement (medians are reported).
    pub repetitions: usize,
    /// About a second per scenario, innergate only, own client: checks that every
    /// scenario completes without an error; no figures are kept.
    pub quick: bool,
    /// Connections of saturation loads.
    pub connections: usize,
    /// Workers (processes or threads) of every system.
    pub workers: usize,
    /// Where systems and load run.
    pub pinning: Pinning,
    /// wrk threads.
    pub load_threads: usize,
    /// The fixed-rate latency runs ask this share of the slowest proxy's saturated
    /// rate from every system.
    pub rate_share: f64,
    /// Bytes per tcp/tls stream.
    pub stream_bytes: u64,
    /// Idle connections of the connections scenario.
    pub idle_connections: usize,
    /// Extra flags for innergate-dataplane.
    pub dataplane_args: Vec<String>,
}

/// What every scenario is handed.
#[derive(Debug)]
pub struct Bench {
    /// The options.
    pub opts: Options,
    /// Scratch directory for configurations, sockets and logs.
    pub dir: PathBuf,
    /// The bench certificate.
    pub certs: Certs,
    /// The backend.
    pub backend: Backend,
    /// wrk's reporting script (full runs).
    pub wrk_script: Option<PathBuf>,
    /// The data plane binary.
    pub dataplane: PathBuf,
}

/// An HTTP target of a load: where to connect and which host to ask for.
#[derive(Clone, Copy, Debug)]
pub struct HttpTarget<'a> {
    /// Its name in the results (`nginx`, `innergate`, …).
    pub name: &'a str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The Host header.
    pub host: &'a str,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// The system's processes, whose CPU time is counted (none for direct).
    pub process: Option<&'a dyn CpuTime>,
}

/// The systems of one scenario; peers only in full runs.
#[derive(Debug)]
pub struct Systems {
    /// innergate's data plane.
    pub innergate: DataPlane,
    /// nginx, when compared.
    pub nginx: Option<Nginx>,
    /// HAProxy, when compared.
    pub haproxy: Option<Haproxy>,
}

impl Bench {
    /// The context systems start in.
    pub fn context(&self) -> Context<'_> {
        Context {
            dir: &self.dir,
            backend: &self.backend,
            certs: &self.certs,
            workers: self.opts.workers,
            cpus: self.opts.pinning.proxy.as_ref(),
        }
    }

    /// Starts innergate with the standard table (the policy endpoint gets `policy`),
    /// and nginx and HAProxy unless the run is quick.
    pub fn start_systems(&self, policy: &str) -> Result<Systems> {
        let cx = self.context();
        let mut dp = self.start_dataplane()?;
        dp.push(innergate::standard_table(&cx, policy))?;
        let (nginx, haproxy) = if self.opts.quick {
            (None, None)
        } else {
            (Some(nginx::start(&cx)?), Some(haproxy::start(&cx)?))
        };
        Ok(Systems {
            innergate: dp,
            nginx,
            haproxy,
        })
    }

    /// innergate's data plane with the run's extra flags and no table yet.
    pub fn start_dataplane(&self) -> Result<DataPlane> {
        let extra: Vec<&str> = self
            .opts
            .dataplane_args
            .iter()
            .map(String::as_str)
            .collect();
        DataPlane::start(&self.context(), &self.dataplane, &extra)
    }

    /// Repetitions of this run (1 when quick).
    pub fn repetitions(&self) -> usize {
        if self.opts.quick {
            1
        } else {
            self.opts.repetitions.max(1)
        }
    }

    /// A saturating load: wrk in full runs, the bench's own closed-loop client in
    /// quick runs (which need nothing installed).
    pub fn saturate(&self, t: &HttpTarget, path: &str, close: bool) -> Result<HttpResult> {
        let load_cpus = self.opts.pinning.load.as_ref();
        match (&self.wrk_script, self.opts.quick) {
            (Some(script), false) => Wrk {
                url: format!(
                    "{}://{}{path}",
                    if t.tls { "https" } else { "http" },
                    t.addr
                ),
                host: t.host,
                connections: self.opts.connections,
                threads: self.opts.load_threads,
                duration: self.opts.duration,
                close,
                cpus: load_cpus,
                script,
            }
            .run(),
            _ => Load {
                addr: t.addr,
                host: t.host,
                path,
                connections: if self.opts.quick {
                    4
                } else {
                    self.opts.connections
                },
                duration: self.load_duration(),
                rate: None,
                close,
                tls: t.tls.then(|| self.certs.client.clone()),
                cpus: load_cpus,
            }
            .run(),
        }
    }

    /// An open-loop load at `rate` requests per second.
    pub fn at_rate(&self, t: &HttpTarget, path: &str, rate: f64) -> Result<HttpResult> {
        Load {
            addr: t.addr,
            host: t.host,
            path,
            connections: self.opts.connections.min(32),
            duration: self.load_duration(),
            rate: Some(rate),
            close: false,
            tls: t.tls.then(|| self.certs.client.clone()),
            cpus: self.opts.pinning.load.as_ref(),
        }
        .run()
    }

    fn load_duration(&self) -> Duration {
        if self.opts.quick {
            Duration::from_secs(1)
        } else {
            self.opts.duration
        }
    }

    /// Prints one measurement as it completes.
    pub fn progress(&self, scenario: &str, case: &str, target: &str, rep: usize, what: &str) {
        eprintln!(
            "  [{scenario}] {case} · {target} · {}/{}: {what}",
            rep + 1,
            self.repetitions()
        );
    }

    /// Saturates every target for every case, repetitions interleaved so that a
    /// drift of the machine touches every target alike, and records the results.
    pub fn saturate_all(
        &self,
        result: &mut ScenarioResult,
        cases: &[(&str, &str, bool)],
        targets: &[HttpTarget],
    ) -> Result<()> {
        for rep in 0..self.repetitions() {
            for &(case, path, close) in cases {
                for t in targets {
                    let cpu_before = t.process.map(CpuTime::cpu_seconds);
                    let r = self.saturate(t, path, close)?;
                    self.progress(&result.name, case, t.name, rep, &describe(&r));
                    let mut sample = crate::report::Sample::http(&r);
                    if let (Some(p), Some(before), true) = (t.process, cpu_before, r.requests > 0) {
                        let us = (p.cpu_seconds() - before) * 1e6 / r.requests as f64;
                        sample = sample.with(metric::CPU_US_PER_REQ, us);
                    }
                    result.record(case, t.name, sample);
                }
            }
        }
        Ok(())
    }

    /// Runs every target at one fixed rate: `rate_share` of the slowest proxy's
    /// median rate in `case` (direct is not a proxy, so not counted).
    pub fn fixed_rate_all(
        &self,
        result: &mut ScenarioResult,
        case: &str,
        path: &str,
        targets: &[HttpTarget],
    ) -> Result<()> {
        if self.opts.quick {
            return Ok(());
        }
        let slowest = targets
            .iter()
            .filter(|t| t.name != "direct")
            .filter_map(|t| result.median(case, t.name, metric::RPS))
            .fold(f64::INFINITY, f64::min);
        if !slowest.is_finite() {
            return Ok(());
        }
        let rate = (slowest * self.opts.rate_share / 1000.0).round().max(1.0) * 1000.0;
        let label = format!("{case} at {rate:.0} req/s");
        result.notes.push(format!(
            "`{label}`: open loop at {:.0} % of the slowest proxy's saturated rate, {} connections, latency counted from when each request was due.",
            self.opts.rate_share * 100.0,
            self.opts.connections.min(32)
        ));
        for rep in 0..self.repetitions() {
            for t in targets {
                let r = self.at_rate(t, path, rate)?;
                self.progress(&result.name, &label, t.name, rep, &describe(&r));
                result.record(&label, t.name, crate::report::Sample::http(&r));
            }
        }
        Ok(())
    }
}

impl Systems {
    /// The HTTP targets: direct (when `direct`), nginx, HAProxy and innergate at
    /// `host` over plain HTTP (or TLS when `tls`).
    pub fn http_targets<'a>(
        &'a self,
        bench: &Bench,
        host: &'a str,
        tls: bool,
        direct: bool,
    ) -> Result<Vec<HttpTarget<'a>>> {
        let mut targets = Vec::new();
        if direct && !bench.opts.quick {
            targets.push(HttpTarget {
                name: "direct",
                addr: bench.backend.http,
                host,
                tls: false,
                process: None,
            });
        }
        let pick = |l: &crate::systems::Listeners| if tls { l.https } else { l.http };
        if let Some(n) = &self.nginx {
            targets.push(HttpTarget {
                name: "nginx",
                addr: pick(&n.listen),
                host,
                tls,
                process: Some(&n.process),
            });
        }
        if let Some(h) = &self.haproxy {
            targets.push(HttpTarget {
                name: "haproxy",
                addr: pick(&h.listen),
                host,
                tls,
                process: Some(&h.process),
            });
        }
        targets.push(HttpTarget {
            name: "innergate",
            addr: self.innergate.listener(if tls { 443 } else { 80 })?,
            host,
            tls,
            process: Some(&self.innergate.process),
        });
        Ok(targets)
    }
}

/// One line for the terminal.
pub fn describe(r: &HttpResult) -> String {
    format!(
        "{:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
        r.rate(),
        r.latency(50.0),
        r.latency(99.0),
        r.errors
    )
}
