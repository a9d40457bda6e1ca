//! Soak benchmark (not a test: it asserts nothing, it measures): the demo's load for a long time
//! on Apache Kafka, to show whether latency and CPU stay flat.
//!
//! Starts an Apache Kafka broker (scripts/kafka.sh), a `pricefeed transform` and a `pricefeed
//! edge` as separate release-built processes, with three channels (the demo has three: vip, pro,
//! retail); writes raw prices at the demo's rate (200/s over 10 symbols, each carrying its send
//! time in µs) for `--minutes`, and connects `--clients` WebSocket clients to one channel. Each
//! minute prints one row: raw record → client latency p50/p99/max over that minute, frames
//! delivered, gaps, and the CPU (cores) of the broker, the transform and the edge, and their RSS.
//! Clients are reconnected for every minute (a fresh snapshot each), the rest runs throughout.
//!
//! Run: `loadtest/soak.sh` (= `cargo bench --bench soak -- --minutes 30 --clients 100 --rate 200`).
//! Results go to docs/benchmarks.md.

#[path = "../tests/common/broker.rs"]
mod broker;
mod loadgen;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loadgen::client::Target;
use loadgen::fleet::Fleet;
use loadgen::measure::latency;
use loadgen::pricefeed as pf;
use loadgen::{proc_stats, raise_fd_limit};

struct Args {
    minutes: u64,
    clients: usize,
    rate: u64,
}

fn args() -> Args {
    Args {
        minutes: loadgen::flag("--minutes", 30),
        clients: loadgen::flag("--clients", 100),
        rate: loadgen::flag("--rate", 200),
    }
}

/// CPU seconds and RSS (KiB) of each process, in the order broker, transform, edge.
fn usage(pids: &[u32; 3]) -> [(f64, u64); 3] {
    pids.map(proc_stats)
}

fn main() {
    let a = args();
    raise_fd_limit();
    let broker = broker::Broker::start_own();
    let dir = tempfile::tempdir().unwrap();
    let symbols = pf::symbols(10);
    let cfg = dir.path().join("channels.toml");
    // Two more channels beside the clients' one, as in the demo: the transform writes three.
    let config = pf::config(&symbols)
        + "\n[channels.wide]\nmarkup = { unit = \"pips\", bid = \"1.0\", ask = \"1.2\" }\n\
           \n[channels.fx]\nsymbols = [\"EURUSD\", \"GBPUSD\", \"USDJPY\"]\n\
           markup = { unit = \"pips\", bid = \"0.4\", ask = \"0.5\" }\n";
    std::fs::write(&cfg, config).unwrap();
    let settings = pf::kafka_settings(&broker.addr);
    let raw_topic = "bench.raw".to_string();
    let rt = pf::runtime();
    pf::create_topics(&rt, &settings, std::slice::from_ref(&raw_topic));
    // The transform creates the channel topics the edge waits for.
    let transform = pf::start_transform(&broker.addr, &cfg, &dir.path().join("transform.log"));
    let edge = pf::start_edge(&broker.addr, &cfg, &dir.path().join("edge.log"));
    let pids = [
        broker.pid().expect("broker pid"),
        transform.child.id(),
        edge.child.id(),
    ];
    let target = Target::Pricefeed {
        token: pf::token(),
        topic: pf::CHANNEL.into(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let generator = pf::generator(
        settings.clone(),
        raw_topic,
        symbols,
        a.rate,
        true,
        stop.clone(),
    );
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "soak: {} raw prices/s through a transform (3 channels) to {} clients of one channel, {} \
         minutes; machine: {cpus} cores, broker Apache Kafka (one node), everything on this machine",
        a.rate, a.clients, a.minutes
    );
    println!(
        "| minute | p50 ms | p99 ms | max ms | frames/s | gaps | broker CPU | transform CPU | edge CPU | broker / transform / edge RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Sample about 2,000 latencies per second.
    let sample_every = (a.rate * a.clients as u64 / 2_000).max(1);
    for minute in 1..=a.minutes {
        let fleet = Fleet::start(&rt, edge.port, &target, a.clients, sample_every);
        let counters = fleet.counters.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !counters.seen.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        counters.recording.store(true, Ordering::Relaxed);
        let before = usage(&pids);
        let f0 = counters.frames.total();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(59));
        let secs = t0.elapsed().as_secs_f64();
        let after = usage(&pids);
        let frames = counters.frames.total() - f0;
        let gaps = counters.gaps.load(Ordering::Relaxed);
        let l = latency(fleet.stop(&rt));
        let ms = |f: fn(&loadgen::measure::Latency) -> f64| l.as_ref().map_or(f64::NAN, f);
        let cpu = |i: usize| (after[i].0 - before[i].0) / secs;
        println!(
            "| {minute} | {:.2} | {:.2} | {:.2} | {:.0} | {gaps} | {:.3} | {:.3} | {:.3} | {} / {} / {} |",
            ms(|l| l.p50),
            ms(|l| l.p99),
            ms(|l| l.max),
            frames as f64 / secs,
            cpu(0),
            cpu(1),
            cpu(2),
            after[0].1 / 1024,
            after[1].1 / 1024,
            after[2].1 / 1024,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = generator.join().unwrap_or(0);
    println!("sent {sent} raw prices");
}
