//! What a run measured, and how it is written: JSON for machines, a markdown section
//! per scenario in `bench/RESULTS.md`, and an SVG of latency percentiles per scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::load::HttpResult;

/// Metric names, in the order tables show them.
pub mod metric {
    /// Requests per second.
    pub const RPS: &str = "req/s";
    /// Median latency.
    pub const P50: &str = "p50 ms";
    /// 99th percentile latency.
    pub const P99: &str = "p99 ms";
    /// 99.9th percentile latency.
    pub const P999: &str = "p99.9 ms";
    /// Failed requests or streams (must be 0).
    pub const ERRORS: &str = "errors";
    /// Byte-stream throughput.
    pub const GBPS: &str = "GB/s";
    /// CPU seconds the system spent per GiB moved.
    pub const CPU_PER_GIB: &str = "CPU s/GiB";
    /// CPU microseconds the system spent per request (user + system, all its
    /// processes or threads): what a request costs, whoever saturates first.
    pub const CPU_US_PER_REQ: &str = "CPU µs/req";
    /// Resident memory per idle connection.
    pub const KIB_PER_CONN: &str = "KiB/conn";
    /// Resident memory of the system.
    pub const RSS_MIB: &str = "RSS MiB";
    /// Time to apply a table.
    pub const APPLY_MS: &str = "apply ms";
    /// Tables applied during a load.
    pub const PUSHES: &str = "pushes";

    /// Every metric in table order.
    pub const ORDER: [&str; 12] = [
        RPS,
        CPU_US_PER_REQ,
        P50,
        P99,
        P999,
        GBPS,
        CPU_PER_GIB,
        KIB_PER_CONN,
        RSS_MIB,
        APPLY_MS,
        PUSHES,
        ERRORS,
    ];
}

/// One measurement of one target.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Metric name → value.
    pub metrics: BTreeMap<&'static str, f64>,
    /// (percentile, ms) points, for HTTP loads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_ms: Vec<(f64, f64)>,
}

impl Sample {
    /// The figures of an HTTP load.
    pub fn http(r: &HttpResult) -> Sample {
        let mut s = Sample {
            latency_ms: r.latency_ms.clone(),
            ..Sample::default()
        };
        s.metrics.insert(metric::RPS, r.rate());
        s.metrics.insert(metric::P50, r.latency(50.0));
        s.metrics.insert(metric::P99, r.latency(99.0));
        s.metrics.insert(metric::P999, r.latency(99.9));
        s.metrics.insert(metric::ERRORS, r.errors as f64);
        s
    }

    /// Adds one metric.
    pub fn with(mut self, name: &'static str, value: f64) -> Sample {
        self.metrics.insert(name, value);
        self
    }
}

/// Every sample of one (case, target) pair.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured (`100 B`, `3 hops`, `handshakes`).
    pub case: String,
    /// Which system (`direct`, `nginx`, `haproxy`, `innergate`, …).
    pub target: String,
    /// One per repetition.
    pub samples: Vec<Sample>,
}

impl Row {
    /// The median of `name` over the samples (the upper middle for an even count).
    pub fn median(&self, name: &str) -> Option<f64> {
        let mut values: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|s| s.metrics.get(name).copied())
            .filter(|v| !v.is_nan())
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(values[values.len() / 2])
    }

    /// The sample with the median request rate (or the first), whose latency curve
    /// the plot shows.
    fn median_sample(&self) -> Option<&Sample> {
        let rps = self.median(metric::RPS);
        self.samples
            .iter()
            .find(|s| rps.is_some() && s.metrics.get(metric::RPS).copied() == rps)
            .or(self.samples.first())
    }
}

/// A BENCH.md target checked against this run's medians.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What is compared (`100 B req/s: innergate / nginx`).
    pub what: String,
    /// The measured value (a ratio, or a figure for absolute targets).
    pub value: f64,
    /// The target, as BENCH.md words it (`≥ 1.25`).
    pub goal: String,
    /// Whether this run met it.
    pub met: bool,
}

/// Which way a check's value must lie from its bound.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// value ≥ bound
    AtLeast(f64),
    /// value ≤ bound
    AtMost(f64),
}

impl Bound {
    fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtLeast(b) => value >= b,
            Bound::AtMost(b) => value <= b,
        }
    }

    fn text(self) -> String {
        match self {
            Bound::AtLeast(b) => format!("≥ {b}"),
            Bound::AtMost(b) => format!("≤ {b}"),
        }
    }
}

/// Everything one scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// The scenario's name on the command line.
    pub name: String,
    /// What it measures, in a sentence.
    pub title: String,
    /// The rows, in the order measured.
    pub rows: Vec<Row>,
    /// The BENCH.md targets checked.
    pub checks: Vec<Check>,
    /// Settings worth printing beside the table (payload sizes, rates, counts).
    pub notes: Vec<String>,
}

impl ScenarioResult {
    /// An empty result.
    pub fn new(name: &str, title: &str) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            title: title.into(),
            rows: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a sample to the row of (case, target), making the row if needed.
    pub fn record(&mut self, case: &str, target: &str, sample: Sample) {
        match self
            .rows
            .iter_mut()
            .find(|r| r.case == case && r.target == target)
        {
            Some(row) => row.samples.push(sample),
            None => self.rows.push(Row {
                case: case.into(),
                target: target.into(),
                samples: vec![sample],
            }),
        }
    }

    /// The median of `name` in row (case, target).
    pub fn median(&self, case: &str, target: &str, name: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.case == case && r.target == target)?
            .median(name)
    }

    /// Checks `a / b` of metric `name` against `bound`; skipped when either is missing.
    pub fn check_ratio(&mut self, name: &str, a: (&str, &str), b: (&str, &str), bound: Bound) {
        let (Some(x), Some(y)) = (self.median(a.0, a.1, name), self.median(b.0, b.1, name)) else {
            return;
        };
        if y == 0.0 {
            return;
        }
        let what = if a.0 == b.0 {
            format!("{} {name}: {} / {}", a.0, a.1, b.1)
        } else {
            format!("{name}: {} {} / {} {}", a.1, a.0, b.1, b.0)
        };
        self.check(what, x / y, bound);
    }

    /// Checks a value against `bound`.
    pub fn check(&mut self, what: String, value: f64, bound: Bound) {
        self.checks.push(Check {
            what,
            value,
            goal: bound.text(),
            met: bound.holds(value),
        });
    }

    /// Rows whose samples counted errors, as `case · target: N`.
    pub fn errors(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| {
                let n: f64 = r
                    .samples
                    .iter()
                    .filter_map(|s| s.metrics.get(metric::ERRORS))
                    .sum();
                (n > 0.0).then(|| format!("{} · {}: {n} errors", r.case, r.target))
            })
            .collect()
    }

    /// The scenario as a markdown section.
    pub fn markdown(&self, run: &RunInfo) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "### {} — {}\n", self.name, self.title);
        let _ = writeln!(
            md,
            "{} · {} cores, {}, Linux {} · {} · {} worker(s) per system · backend: {} · {} × {} s, median shown.\n",
            run.date,
            run.machine.cores,
            run.machine.cpu,
            run.machine.kernel,
            run.pinning,
            run.workers,
            run.backend,
            run.repetitions,
            run.duration_s,
        );
        if !run.dataplane_args.is_empty() {
            let _ = writeln!(
                md,
                "- innergate-dataplane ran with `{}`.",
                run.dataplane_args
            );
        }
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !self.notes.is_empty() || !run.dataplane_args.is_empty() {
            md.push('\n');
        }
        let columns: Vec<&str> = metric::ORDER
            .iter()
            .copied()
            .filter(|m| self.rows.iter().any(|r| r.median(m).is_some()))
            .collect();
        let _ = writeln!(md, "| case | target | {} |", columns.join(" | "));
        let _ = writeln!(md, "|---|---|{}", "---:|".repeat(columns.len()));
        for row in &self.rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|m| row.median(m).map_or("–".into(), |v| format_value(m, v)))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                row.case,
                row.target,
                cells.join(" | ")
            );
        }
        if !self.checks.is_empty() {
            let _ = writeln!(md, "\n| BENCH.md target | this run | goal | met |");
            let _ = writeln!(md, "|---|---:|---|---|");
            for c in &self.checks {
                let _ = writeln!(
                    md,
                    "| {} | {:.2} | {} | {} |",
                    c.what,
                    c.value,
                    c.goal,
                    if c.met { "yes" } else { "**no**" }
                );
            }
        }
        if self
            .rows
            .iter()
            .any(|r| r.samples.iter().any(|s| !s.latency_ms.is_empty()))
        {
            let _ = writeln!(md, "\n![{} latency](results/{}.svg)", self.name, self.name);
        }
        md
    }

    /// Latency percentiles of every case with curves, one panel per case, as SVG.
    pub fn latency_svg(&self) -> Option<String> {
        let mut cases: Vec<&str> = Vec::new();
        for r in &self.rows {
            if r.median_sample().is_some_and(|s| !s.latency_ms.is_empty())
                && !cases.contains(&r.case.as_str())
            {
                cases.push(&r.case);
            }
        }
        if cases.is_empty() {
            return None;
        }
        let (width, panel, left, top) = (720.0, 260.0, 70.0, 40.0);
        let plot_w = width - left - 170.0;
        let plot_h = panel - 70.0;
        let height = top + panel * cases.len() as f64;
        let colours = [
            "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
        ];
        // x: percentile on a "nines" scale, 0 % → 0, 90 % → 1, 99 % → 2, 99.99 % → 4.
        let nines = |p: f64| (-(1.0 - (p / 100.0).min(0.99999)).log10()).min(5.0);
        let max_x = 4.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="22" font-size="15">{}: latency by percentile</text>"#,
            self.name
        );
        for (i, case) in cases.iter().enumerate() {
            let y0 = top + panel * i as f64 + 20.0;
            let rows: Vec<(&Row, &Sample)> = self
                .rows
                .iter()
                .filter(|r| r.case == *case)
                .filter_map(|r| Some((r, r.median_sample()?)))
                .filter(|(_, s)| !s.latency_ms.is_empty())
                .collect();
            let max_ms = rows
                .iter()
                .flat_map(|(_, s)| s.latency_ms.iter())
                .filter(|(p, _)| *p <= 99.99)
                .map(|(_, ms)| *ms)
                .fold(0.0, f64::max)
                .max(0.001)
                * 1.1;
            let _ = writeln!(
                svg,
                r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
                y0 - 6.0,
                escape(case)
            );
            let _ = writeln!(
                svg,
                r##"<rect x="{left}" y="{y0}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>"##
            );
            for (label, p) in [
                ("0%", 0.0),
                ("90%", 90.0),
                ("99%", 99.0),
                ("99.9%", 99.9),
                ("99.99%", 99.99),
            ] {
                let x = left + nines(p) / max_x * plot_w;
                let _ = writeln!(
                    svg,
                    r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                    y0 + plot_h,
                    y0 + plot_h + 15.0
                );
            }
            for k in 0..=4 {
                let ms = max_ms * k as f64 / 4.0;
                let y = y0 + plot_h - plot_h * k as f64 / 4.0;
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{ms:.2} ms</text>"#,
                    left - 5.0,
                    y + 4.0
                );
            }
            for (j, (row, sample)) in rows.iter().enumerate() {
                let colour = colours[j % colours.len()];
                let points: Vec<String> = sample
                    .latency_ms
                    .iter()
                    .filter(|(p, _)| *p <= 99.99)
                    .map(|(p, ms)| {
                        let x = left + nines(*p) / max_x * plot_w;
                        let y = y0 + plot_h - (ms / max_ms).min(1.0) * plot_h;
                        format!("{x:.1},{y:.1}")
                    })
                    .collect();
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                    points.join(" ")
                );
                let ly = y0 + 14.0 + 18.0 * j as f64;
                let lx = left + plot_w + 15.0;
                let _ = writeln!(
                    svg,
                    r#"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                    ly - 4.0,
                    lx + 20.0,
                    ly - 4.0,
                    lx + 25.0,
                    escape(&row.target)
                );
            }
        }
        svg.push_str("</svg>\n");
        Some(svg)
    }
}

fn format_value(name: &str, v: f64) -> String {
    match name {
        metric::RPS => group_thousands(v.round() as u64),
        metric::ERRORS | metric::PUSHES => format!("{v:.0}"),
        metric::P50 | metric::P99 | metric::P999 | metric::CPU_PER_GIB => format!("{v:.3}"),
        metric::CPU_US_PER_REQ => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The settings of a run, written beside its results.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// UTC date and time the run started.
    pub date: String,
    /// The machine.
    pub machine: crate::host::Machine,
    /// Where things ran.
    pub pinning: String,
    /// What answered the HTTP requests.
    pub backend: String,
    /// Workers per system.
    pub workers: usize,
    /// Extra flags innergate's data plane ran with.
    pub dataplane_args: String,
    /// Repetitions of every measurement.
    pub repetitions: usize,
    /// Seconds per HTTP load.
    pub duration_s: u64,
    /// The command line.
    pub command: String,
}

/// A whole run: settings and every scenario's result.
#[derive(Debug, Serialize)]
pub struct Run<'a> {
    /// The settings.
    #[serde(flatten)]
    pub info: &'a RunInfo,
    /// The results.
    pub scenarios: &'a [ScenarioResult],
}

/// Writes the JSON of the run and each scenario's plot into `dir`, and puts each
/// scenario's section into `results_md` (replacing that scenario's previous section).
pub fn write(dir: &Path, results_md: &Path, run: &Run) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stamp: String = run
        .info
        .date
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let json = dir.join(format!("run-{stamp}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(run)?)?;
    let mut md = std::fs::read_to_string(results_md).unwrap_or_default();
    for scenario in run.scenarios {
        if let Some(svg) = scenario.latency_svg() {
            std::fs::write(dir.join(format!("{}.svg", scenario.name)), svg)?;
        }
        md = replace_section(&md, &scenario.name, &scenario.markdown(run.info));
    }
    std::fs::write(results_md, md)?;
    Ok(json)
}

/// Start and end of the harness's part of RESULTS.md.
const HARNESS_BEGIN: &str = "<!-- bench:begin -->";
const HARNESS_END: &str = "<!-- bench:end -->";

/// `md` with the section of `scenario` replaced by `section` (added at the end of
/// the harness part, which is made when missing).
fn replace_section(md: &str, scenario: &str, section: &str) -> String {
    let mut md = md.to_string();
    if !md.contains(HARNESS_END) {
        md = format!(
            "{}\n## Latest harness results (`cargo run --release -p innergate-bench -- all`)\n\n{HARNESS_BEGIN}\n{HARNESS_END}\n\n{}",
            md.lines().take(1).collect::<String>(),
            md.lines().skip(1).collect::<Vec<_>>().join("\n")
        );
    }
    let begin = format!("<!-- scenario:{scenario} -->");
    let end = format!("<!-- /scenario:{scenario} -->");
    let block = format!("{begin}\n{section}{end}\n");
    if let (Some(a), Some(b)) = (md.find(&begin), md.find(&end)) {
        if a < b {
            let tail = b + end.len() + usize::from(md[b + end.len()..].starts_with('\n'));
            md.replace_range(a..tail, &block);
            return md;
        }
    }
    let at = md.find(HARNESS_END).unwrap_or(md.len());
    md.insert_str(at, &block);
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rps: f64, p99: f64) -> Sample {
        Sample::default()
            .with(metric::RPS, rps)
            .with(metric::P99, p99)
    }

    #[test]
    fn medians_and_ratio_checks() {
        let mut s = ScenarioResult::new("http-proxy", "t");
        for (a, b) in [(100.0, 60.0), (120.0, 80.0), (90.0, 100.0)] {
            s.record("100 B", "innergate", sample(a, 1.0));
            s.record("100 B", "nginx", sample(b, 2.0));
        }
        assert_eq!(s.median("100 B", "innergate", metric::RPS), Some(100.0));
        assert_eq!(s.median("100 B", "nginx", metric::RPS), Some(80.0));
        s.check_ratio(
            metric::RPS,
            ("100 B", "innergate"),
            ("100 B", "nginx"),
            Bound::AtLeast(1.25),
        );
        s.check_ratio(
            metric::P99,
            ("100 B", "innergate"),
            ("100 B", "nginx"),
            Bound::AtMost(1.0),
        );
        s.check_ratio(
            metric::RPS,
            ("100 B", "innergate"),
            ("100 B", "haproxy"),
            Bound::AtLeast(1.0),
        );
        assert_eq!(s.checks.len(), 2, "a missing row is no check");
        assert!(s.checks[0].met && (s.checks[0].value - 1.25).abs() < 1e-9);
        assert!(s.checks[1].met);
    }

    #[test]
    fn sections_are_replaced_in_place() {
        let md = "# Benchmark results\n\nolder notes\n";
        let once = replace_section(md, "tcp", "tcp v1\n");
        let twice = replace_section(&once, "tcp", "tcp v2\n");
        let both = replace_section(&twice, "https", "https v1\n");
        assert!(both.starts_with("# Benchmark results\n"));
        assert!(both.contains("tcp v2") && !both.contains("tcp v1"));
        assert!(both.find("tcp v2").unwrap() < both.find("https v1").unwrap());
        assert!(both.trim_end().ends_with("older notes"));
        assert_eq!(both.matches(HARNESS_END).count(), 1);
    }

    #[test]
    fn the_plot_has_a_line_per_target() {
        let mut s = ScenarioResult::new("x", "t");
        for target in ["a", "b"] {
            let mut sample = sample(1.0, 1.0);
            sample.latency_ms = vec![(0.0, 0.1), (50.0, 0.2), (99.0, 0.9), (99.9, 1.5)];
            s.record("100 B", target, sample);
        }
        let svg = s.latency_svg().unwrap();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(group_thousands(1234567), "1,234,567");
    }
}
