//! `innergate-bench`: every scenario of BENCH.md, innergate beside nginx, HAProxy and
//! a direct connection in the same run (and, for tunnels, beside rathole and bore).
//!
//!     cargo run --release -p innergate-bench -- all --pin proxy=1,load=0
//!     cargo run --release -p innergate-bench -- http-proxy tcp --duration 5
//!     cargo run -p innergate-bench -- all --quick      # CI: innergate only, no figures
//!
//! Start reading at [`scenarios`]: one file per scenario, sharing the backend
//! ([`backend`]), the systems ([`systems`]), the loads ([`load`]) and the report
//! ([`report`]). Everything listens on 127.0.0.1 and stops when the run ends.

mod backend;
mod certs;
mod host;
mod load;
mod report;
mod scenarios;
mod systems;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use crate::host::{have, Machine, Pinning};
use crate::report::{Run, RunInfo, ScenarioResult};
use crate::scenarios::{Bench, Options, ALL};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// innergate's benchmark harness.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Scenarios to run: http-proxy, forward-internal, policy, https, tcp,
    /// connections, table-scale, tunnel, or all.
    #[arg(required = true)]
    scenarios: Vec<String>,
    /// Seconds per HTTP load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Repetitions of every measurement (the tables show medians).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// About a second per scenario against innergate only, with the bench's own
    /// client: fails on any error; writes no results.
    #[arg(long)]
    quick: bool,
    /// Connections of saturation loads.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Workers of every system (innergate --workers, nginx worker_processes,
    /// HAProxy nbthread).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// CPU pinning: `proxy=1,load=0` puts the systems on CPU 1 and wrk, the bench's
    /// clients and the backend on CPU 0 (sets: `proxy=2-3`, `proxy=1+3`).
    #[arg(long, value_parser = Pinning::parse, default_value = "")]
    pin: Pinning,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// Fixed-rate runs ask this share of the slowest proxy's saturated rate.
    #[arg(long, default_value_t = 0.3)]
    rate_share: f64,
    /// Bytes per tcp/tls stream.
    #[arg(long, default_value_t = 1 << 30)]
    stream_bytes: u64,
    /// Idle connections of the connections scenario.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Backend HTTP server threads (or nginx workers with `--backend nginx`).
    #[arg(long, default_value_t = 1)]
    backend_threads: usize,
    /// The HTTP backend: the bench's own monoio server, or nginx serving static files.
    #[arg(long, value_enum, default_value = "own")]
    backend: BackendKind,
    /// Where JSON and plots go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// The markdown file whose scenario sections are replaced.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md"))]
    results_md: PathBuf,
    /// An extra flag for innergate-dataplane (repeatable), such as
    /// `--dataplane-arg=--tcp-forwarding=splice`.
    #[arg(long = "dataplane-arg", allow_hyphen_values = true)]
    dataplane_args: Vec<String>,
    /// Print the results only; write no files.
    #[arg(long)]
    no_write: bool,
}

/// Which server answers the HTTP requests behind every system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BackendKind {
    /// The bench's monoio HTTP/1.1 server.
    Own,
    /// nginx serving static files with sendfile.
    Nginx,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("innergate-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the chosen scenarios; `Ok(false)` when one failed or (quick) counted errors.
fn run(args: Args) -> Result<bool> {
    let chosen = choose(&args.scenarios)?;
    let chosen_count = chosen.len();
    if !args.quick {
        let missing: Vec<&str> = ["wrk", "nginx", "haproxy", "taskset"]
            .into_iter()
            .filter(|p| !have(p))
            .collect();
        if !missing.is_empty() {
            bail!(
                "missing {}: run scripts/bench-deps.sh (installs wrk, nginx-light, libnginx-mod-stream, haproxy)",
                missing.join(", ")
            );
        }
    }
    host::raise_file_limit();
    let dir = tempfile::Builder::new()
        .prefix("innergate-bench")
        .tempdir()?;
    let certs = certs::Certs::create(dir.path())?;
    let mut backend = backend::Backend::start(
        args.backend_threads,
        args.pin.load.as_ref(),
        certs.server.clone(),
    )?;
    // Kept until the run ends.
    let _nginx_backend = match args.backend {
        BackendKind::Own => None,
        BackendKind::Nginx => {
            if !have("nginx") {
                bail!("--backend nginx needs nginx: run scripts/bench-deps.sh");
            }
            let (process, addr) = systems::nginx::start_backend(
                dir.path(),
                args.backend_threads,
                args.pin.load.as_ref(),
            )?;
            backend.http = addr;
            Some(process)
        }
    };
    let wrk_script = if args.quick {
        None
    } else {
        Some(load::wrk::write_script(dir.path())?)
    };
    let bench = Bench {
        opts: Options {
            duration: Duration::from_secs(args.duration.max(1)),
            repetitions: args.repeat.max(1),
            quick: args.quick,
            connections: args.connections.max(1),
            workers: args.workers.max(1),
            pinning: args.pin.clone(),
            load_threads: args.load_threads.max(1),
            rate_share: args.rate_share.clamp(0.01, 1.0),
            stream_bytes: args.stream_bytes.max(1),
            idle_connections: args.idle_connections.max(1),
            dataplane_args: args.dataplane_args.clone(),
        },
        dir: dir.path().to_path_buf(),
        dataplane: systems::innergate::binary()?,
        certs,
        backend,
        wrk_script,
    };
    let machine = Machine::read();
    let info = RunInfo {
        date: utc_now(),
        backend: match args.backend {
            BackendKind::Own => "the bench's monoio server".into(),
            BackendKind::Nginx => "nginx, static files".into(),
        },
        machine: machine.clone(),
        pinning: args.pin.describe(),
        workers: bench.opts.workers,
        dataplane_args: args.dataplane_args.join(" "),
        repetitions: bench.repetitions(),
        duration_s: bench.opts.duration.as_secs(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    eprintln!(
        "innergate-bench: {} cores ({}), Linux {}, {}, {} worker(s), {}",
        machine.cores,
        machine.cpu,
        machine.kernel,
        info.pinning,
        info.workers,
        if args.quick {
            "quick".to_string()
        } else {
            format!("{} × {} s", info.repetitions, info.duration_s)
        }
    );

    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut ok = true;
    for (name, scenario) in chosen {
        eprintln!("{name}:");
        match scenario(&bench) {
            Ok(result) => {
                let errors = result.errors();
                if !errors.is_empty() {
                    ok = false;
                    eprintln!("  {name}: errors counted:\n    {}", errors.join("\n    "));
                }
                if args.quick && result.rows.is_empty() {
                    ok = false;
                    eprintln!("  {name}: measured nothing");
                }
                for c in &result.checks {
                    eprintln!(
                        "  {name}: {} = {:.2} (goal {}){}",
                        c.what,
                        c.value,
                        c.goal,
                        if c.met { "" } else { "  — not met" }
                    );
                }
                results.push(result);
            }
            Err(e) => {
                ok = false;
                eprintln!("  {name} failed: {e:#}");
            }
        }
    }
    if args.quick {
        // Quick runs check that everything works; their figures mean nothing.
        let passed = results
            .iter()
            .filter(|r| r.errors().is_empty() && !r.rows.is_empty())
            .count();
        println!("bench: {passed} passed, {} failed", chosen_count - passed);
        return Ok(ok);
    }
    for r in &results {
        println!("{}", r.markdown(&info));
    }
    if !args.no_write && !results.is_empty() {
        let json = report::write(
            &args.out,
            &args.results_md,
            &Run {
                info: &info,
                scenarios: &results,
            },
        )?;
        eprintln!(
            "wrote {}, the plots beside it and {}",
            json.display(),
            args.results_md.display()
        );
    }
    Ok(ok)
}

/// The scenarios named, in BENCH.md's order, each once.
fn choose(names: &[String]) -> Result<Vec<scenarios::Scenario>> {
    for name in names {
        if name != "all" && !ALL.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
            bail!("unknown scenario `{name}`: {} or all", known.join(", "));
        }
    }
    Ok(ALL
        .iter()
        .copied()
        .filter(|(n, _)| names.iter().any(|a| a == "all" || a == n))
        .collect())
}

/// The current UTC time as `YYYY-MM-DD HH:MM`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_chosen_by_name_in_order() {
        let names = |v: &[&str]| {
            choose(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map(|c| c.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        };
        assert_eq!(
            names(&["tcp", "http-proxy"]).unwrap(),
            ["http-proxy", "tcp"]
        );
        assert_eq!(names(&["all"]).unwrap().len(), 8);
        assert!(names(&["nope"]).is_err());
    }

    #[test]
    fn dates_are_civil() {
        let now = utc_now();
        assert_eq!(now.len(), "2026-11-24 12:00 UTC".len());
        assert!(now.starts_with("20"));
    }
}
