//! Scenario 7, table-scale: requests per second with 10, 10,000 and 100,000
//! endpoints in the table, the time a 100,000-endpoint table takes to apply, and
//! errors while tables are pushed under load (innergate only: the peers have no
//! pushed tables).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use innergate_table::EndpointRecord;

use super::{describe, Bench, HttpTarget};
use crate::report::{metric, Bound, Sample, ScenarioResult};
use crate::systems::hosts;
use crate::systems::innergate::{agent, standard_table};

pub fn run(b: &Bench) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(
        "table-scale",
        "request rate and table apply time with up to 100,000 endpoints",
    );
    let cx = b.context();
    let sizes: &[usize] = if b.opts.quick {
        &[10, 1_000]
    } else {
        &[10, 10_000, 100_000]
    };
    let upstream = format!("http://{}", b.backend.http);
    let table = |n: usize| -> Vec<EndpointRecord> {
        let mut t = standard_table(&cx, "");
        let fill = n.saturating_sub(t.len());
        t.extend((0..fill).map(|i| {
            agent(
                &format!("ep_fill{i}"),
                &format!("http://e{i}.bench.test"),
                &upstream,
            )
        }));
        t
    };
    let tables: Vec<(usize, Vec<EndpointRecord>)> = sizes.iter().map(|&n| (n, table(n))).collect();
    result.notes.push(
        "Every table holds the standard endpoints plus agent endpoints `e{i}.bench.test` up to its size; the load asks for agent.bench.test. apply ms: from sending the table over the control socket to the data plane's acknowledgement (encoding, decoding, validation, two-phase apply on every worker).".into(),
    );
    let mut dp = b.start_dataplane()?;
    for rep in 0..b.repetitions() {
        for (n, endpoints) in &tables {
            let apply = dp.push(endpoints.clone())?;
            // Steady state: the previous table is freed by the last connection that
            // held it, on its worker; let that pass before measuring.
            std::thread::sleep(Duration::from_secs(1));
            let target = HttpTarget {
                name: "innergate",
                addr: dp.listener(80)?,
                host: hosts::AGENT,
                tls: false,
                process: Some(&dp.process),
            };
            let case = format!("{n} endpoints");
            let r = b.saturate(&target, "/100", false)?;
            let ms = apply.as_secs_f64() * 1000.0;
            b.progress(
                &result.name,
                &case,
                "innergate",
                rep,
                &format!("{}, applied in {ms:.1} ms", describe(&r)),
            );
            result.record(
                &case,
                "innergate",
                Sample::http(&r).with(metric::APPLY_MS, ms),
            );
        }
    }

    // Tables pushed back to back while the load runs: no request may fail.
    let (mid_size, mid) = &tables[tables.len() / 2];
    let case = format!("pushes of {mid_size} endpoints under load");
    for rep in 0..b.repetitions() {
        let target = HttpTarget {
            name: "innergate",
            addr: dp.listener(80)?,
            host: hosts::AGENT,
            tls: false,
            // CPU is not counted here: the pushes share the process.
            process: None,
        };
        let stop = AtomicBool::new(false);
        let pushes = AtomicU64::new(0);
        let (load, pushed) = std::thread::scope(|scope| {
            let pusher = scope.spawn(|| -> Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    dp.push(mid.clone())?;
                    pushes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            });
            let load = b.saturate(&target, "/100", false);
            stop.store(true, Ordering::Relaxed);
            let pushed = pusher
                .join()
                .map_err(|_| anyhow::anyhow!("pusher panicked"));
            (load, pushed)
        });
        let r = load?;
        pushed??;
        let pushes = pushes.load(Ordering::Relaxed) as f64;
        b.progress(
            &result.name,
            &case,
            "innergate",
            rep,
            &format!("{}, {pushes} tables applied", describe(&r)),
        );
        result.record(
            &case,
            "innergate",
            Sample::http(&r).with(metric::PUSHES, pushes),
        );
    }

    let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
    result.check_ratio(
        metric::RPS,
        (&format!("{last} endpoints"), "innergate"),
        (&format!("{first} endpoints"), "innergate"),
        Bound::AtLeast(0.97),
    );
    if let Some(ms) = result.median(&format!("{last} endpoints"), "innergate", metric::APPLY_MS) {
        result.check(
            format!("apply ms, {last} endpoints"),
            ms,
            Bound::AtMost(1000.0),
        );
    }
    if let Some(errors) = result.median(&case, "innergate", metric::ERRORS) {
        result.check(
            "errors during pushes under load".into(),
            errors,
            Bound::AtMost(0.0),
        );
    }
    Ok(result)
}
