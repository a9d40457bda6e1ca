//! The scale-out fault scenario at full size (not a test: it measures; `tests/edge_failover.rs`
//! runs it at CI size and asserts). Three `pricefeed edge` processes and a transform worker on a
//! fresh Apache Kafka broker (scripts/kafka.sh), prices flowing through the transform, failover
//! clients spread over the edges; one edge SIGKILLed, then all three restarted one by one.
//! Prints how long the clients took to move and what they received.
//!
//! Run: `cargo bench --bench failover -- --clients 5000 --rate 200 --runs 3`. Results go to
//! docs/benchmarks.md.

#[path = "../tests/common/broker.rs"]
mod broker;
mod loadgen;

use loadgen::failover_run::{Size, scenario};
use loadgen::{flag, raise_fd_limit};

fn main() {
    raise_fd_limit();
    let clients: usize = flag("--clients", 5000);
    let rate: u64 = flag("--rate", 200);
    let runs: usize = flag("--runs", 1);
    let clients = loadgen::connection_cap(clients);
    let broker = broker::Broker::start_own();
    for run in 0..runs {
        let logs = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let r = scenario(
            &broker.addr,
            &format!("failover{run}"),
            Size { clients, rate },
            logs.path(),
        );
        println!(
            "run {}: {} clients, {} prices/s ({} records): {} failovers, longest {} ms; \
             every client live again after {}; {} frames, {} gaps, {} duplicates, {} resume_gap, \
             {} conflated, {} clients short of the end ({:.0} s)",
            run + 1,
            r.clients,
            rate,
            r.records,
            r.failovers,
            r.max_failover_ms,
            r.phases_ms
                .iter()
                .map(|(what, ms)| format!("{what}: {ms} ms"))
                .collect::<Vec<_>>()
                .join(", "),
            r.frames,
            r.gaps,
            r.duplicates,
            r.resume_gaps,
            r.conflated,
            r.behind_at_end,
            started.elapsed().as_secs_f64()
        );
    }
}
