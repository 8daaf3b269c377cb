//! Saturation load with wrk: a closed loop over keep-alive connections, as the people
//! who judge proxies measure them. A small Lua script makes wrk print its summary and
//! latency percentiles as one JSON line. `INNERGATE_BENCH_SHOW_WRK=1` prints wrk's whole
//! output too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{HttpResult, CURVE};
use crate::host::CpuSet;

/// Writes the reporting script into `dir`; wrk loads it with `-s`.
pub fn write_script(dir: &Path) -> Result<PathBuf> {
    let percentiles: Vec<String> = CURVE.iter().map(|p| p.to_string()).collect();
    let script = format!(
        r#"-- Written by innergate-bench: print the summary as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  local points = {{}}
  for _, p in ipairs({{{list}}}) do
    local us = latency:percentile(p)
    if p == 0 then us = latency.min elseif p == 100 then us = latency.max end
    table.insert(points, string.format("[%g,%.3f]", p, us / 1000.0))
  end
  io.write(string.format(
    'JSON {{"requests":%d,"duration_us":%d,"errors":%d,"latency_ms":[%s]}}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status,
    table.concat(points, ",")))
end
"#,
        list = percentiles.join(",")
    );
    let path = dir.join("report.lua");
    std::fs::write(&path, script)?;
    Ok(path)
}

/// One wrk run.
#[derive(Clone, Debug)]
pub struct Wrk<'a> {
    /// `http://127.0.0.1:PORT/PATH` or `https://…`.
    pub url: String,
    /// The Host header.
    pub host: &'a str,
    /// Open connections.
    pub connections: usize,
    /// wrk threads.
    pub threads: usize,
    /// How long.
    pub duration: Duration,
    /// Ask for `Connection: close` (a new connection, and TLS handshake, per request).
    pub close: bool,
    /// Where wrk runs.
    pub cpus: Option<&'a CpuSet>,
    /// The script of [`write_script`].
    pub script: &'a Path,
}

impl Wrk<'_> {
    /// Runs wrk and reads its JSON line.
    pub fn run(&self) -> Result<HttpResult> {
        let mut command = crate::host::pinned_command(Path::new("wrk"), self.cpus);
        command
            .arg(format!("-t{}", self.threads.min(self.connections).max(1)))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(self.script)
            .arg("-H")
            .arg(format!("Host: {}", self.host));
        if self.close {
            command.arg("-H").arg("Connection: close");
        }
        command.arg(&self.url);
        let out = run_output(command)?;
        if std::env::var_os("INNERGATE_BENCH_SHOW_WRK").is_some() {
            eprintln!("{out}");
        }
        parse(&out)
    }
}

fn run_output(mut command: Command) -> Result<String> {
    let out = command
        .output()
        .context("run wrk (scripts/bench-deps.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

#[derive(serde::Deserialize)]
struct Line {
    requests: u64,
    duration_us: u64,
    errors: u64,
    latency_ms: Vec<(f64, f64)>,
}

/// Reads the JSON line out of wrk's output.
fn parse(output: &str) -> Result<HttpResult> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("JSON "))
        .with_context(|| format!("no summary in wrk's output:\n{output}"))?;
    let line: Line = serde_json::from_str(line).context("wrk summary")?;
    Ok(HttpResult {
        requests: line.requests,
        seconds: line.duration_us as f64 / 1e6,
        errors: line.errors,
        latency_ms: line.latency_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_line() {
        let out = "Running 1s test\n  2 threads\nJSON {\"requests\":1000,\"duration_us\":2000000,\"errors\":3,\"latency_ms\":[[50,0.5],[99,1.25]]}\n";
        let r = parse(out).unwrap();
        assert_eq!((r.requests, r.errors), (1000, 3));
        assert_eq!(r.rate(), 500.0);
        assert_eq!(r.latency(99.0), 1.25);
        assert!(parse("no json here").is_err());
    }
}
