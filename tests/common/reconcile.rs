//! The kill tests' check: `pricefeed reconcile` (the operator command) over everything the
//! test's workers wrote.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::Broker;

/// One run of `pricefeed reconcile --json`: its exit code, and its report.
pub fn reconcile(broker: &Broker, config: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .arg("--config")
        .arg(config)
        .args(["--brokers", &broker.addr, "reconcile", "--json"])
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .expect("run pricefeed reconcile");
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "reconcile exited {code} without a report: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// Names and counts of the findings in a report, e.g. `["p0 prices.vip missing 3 (10..=12)"]`.
pub fn findings(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in report["partitions"].as_array().into_iter().flatten() {
        for o in p["outputs"].as_array().into_iter().flatten() {
            for kind in [
                "missing",
                "doubled",
                "out_of_order",
                "wrong_partition",
                "wrong_price",
                "unexpected",
            ] {
                let list: Vec<i64> = o[kind]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_i64())
                    .collect();
                if !list.is_empty() {
                    out.push(format!(
                        "partition {} {} {kind} {} ({})",
                        p["partition"],
                        o["topic"].as_str().unwrap_or(""),
                        list.len(),
                        pricefeed::reconcile::report::ranges(&list)
                    ));
                }
            }
            if o["foreign"].as_u64().unwrap_or(0) > 0 {
                out.push(format!(
                    "{} foreign records in {}",
                    o["foreign"], o["topic"]
                ));
            }
        }
    }
    out
}

/// Output records compared by a report.
pub fn output_records(report: &serde_json::Value) -> u64 {
    report["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["outputs"].as_array().into_iter().flatten())
        .map(|o| o["records"].as_u64().unwrap_or(0))
        .sum()
}

/// Output records a report compared on one topic (every partition).
pub fn topic_records(report: &serde_json::Value, topic: &str) -> u64 {
    report["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["outputs"].as_array().into_iter().flatten())
        .filter(|o| o["topic"] == topic)
        .map(|o| o["records"].as_u64().unwrap_or(0))
        .sum()
}

/// Waits until `reconcile` is clean. Records still missing may be on their way (the workers
/// catch up) for up to `timeout`; any other finding fails at once.
pub fn assert_reconciled(broker: &Broker, config: &Path, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, report) = reconcile(broker, config, &[]);
        if code == 0 {
            return report;
        }
        let found = findings(&report);
        let only_missing = found.iter().all(|f| f.contains(" missing "));
        if !only_missing || Instant::now() > deadline {
            panic!("reconcile exited {code}:\n{}", found.join("\n"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
