//! Edges scale out and survive each other: three `pricefeed edge` processes on Apache Kafka,
//! 1,000 failover clients (the load client, `benches/loadgen/failover.rs`) spread over them while
//! prices flow through a transform worker. One edge is SIGKILLed, then all three are restarted one
//! by one. Every client moves to another edge and resumes there: zero gaps, zero duplicates, every
//! record of every partition received, each failover within 10 s. The full-size run is
//! `cargo bench --bench failover` (docs/benchmarks.md).

mod common;
#[path = "../benches/loadgen/mod.rs"]
mod loadgen;

use common::*;
use loadgen::failover_run::{Size, scenario};

#[test]
fn clients_fail_over_between_three_edges_with_no_gap_and_no_duplicate() {
    let broker = Broker::start();
    let prefix = unique_prefix("failover");
    let logs = tempfile::tempdir().unwrap();
    let r = scenario(
        &broker.addr,
        &prefix,
        Size {
            clients: 1000,
            rate: 30,
        },
        logs.path(),
    );
    println!("{r:#?}");
    let keep = || {
        let dir = std::env::temp_dir().join(format!("{prefix}-logs"));
        let _ = std::fs::create_dir_all(&dir);
        for e in std::fs::read_dir(logs.path()).unwrap().flatten() {
            let _ = std::fs::copy(e.path(), dir.join(e.file_name()));
        }
        dir
    };
    let ok = r.subscribed == 1000
        && r.gaps == 0
        && r.duplicates == 0
        && r.resume_gaps == 0
        && r.conflated == 0
        && r.behind_at_end == 0
        && r.max_failover_ms <= 10_000
        // Every node went away once, so every client moved at least once.
        && r.failovers >= 1000
        && r.resumed == r.failovers;
    assert!(ok, "{r:#?}\nlogs kept in {}", keep().display());
}
