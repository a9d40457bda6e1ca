//! Fan-out benchmark of the WebSocket edge (not a test: it asserts nothing, it measures).
//!
//! Starts an Apache Kafka broker (scripts/kafka.sh) and a `pricefeed edge` process, writes channel records straight into
//! `bench.bench` at a fixed rate (each carrying its send time), and drives WebSocket clients
//! from this process with the lean load client of `benches/loadgen` (raw frames, no JSON
//! parsing) so that the load generator costs as little of the 2 cores as possible. Reports, per
//! phase:
//! - idle memory: server RSS per connection with N connections set up and subscribed;
//! - fan-out: frames/s delivered to C clients at offered rates, latency from the record's
//!   timestamp to the client's read (p50/p99 from an HDR histogram), gaps and conflations,
//!   server CPU.
//!
//! Run: `cargo bench --bench fanout` (options after `--`: `--clients 1000 --idle 10000
//! --rates 200,1000,3000 --seconds 8 --symbols 10`, and `--max-rate 2` for clients throttled to
//! 2 updates per second per symbol by their token; a throttled stream skips seqNos by design,
//! so its gaps column counts skips). Results go to docs/benchmarks.md.

#[path = "../tests/common/broker.rs"]
mod broker;
mod loadgen;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loadgen::client::{Target, sent_us};
use loadgen::fleet::Fleet;
use loadgen::measure::{cell, latency};
use loadgen::pricefeed::{self as pf, PARTITIONS};
use loadgen::{http_get, now_us, proc_stats, raise_fd_limit};
use pricefeed::kafka::KafkaSettings;

struct Args {
    clients: usize,
    idle: usize,
    rates: Vec<u64>,
    seconds: u64,
    symbols: usize,
    /// Raw prices through a transform worker, rather than channel records straight to the edge.
    raw: bool,
    /// Throttled clients: a token `max_rate` of this many updates per second per symbol.
    max_rate: Option<f64>,
}

fn args() -> Args {
    let mut a = Args {
        clients: 1000,
        idle: 10_000,
        rates: vec![200, 1000, 2000, 3000, 4000],
        seconds: 8,
        symbols: 10,
        raw: false,
        max_rate: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--clients" => a.clients = v.parse().unwrap(),
            "--idle" => a.idle = v.parse().unwrap(),
            "--rates" => a.rates = loadgen::rates(&v),
            "--seconds" => a.seconds = v.parse().unwrap(),
            "--symbols" => a.symbols = v.parse().unwrap(),
            "--max-rate" => a.max_rate = Some(v.parse().unwrap()),
            "--raw" => {
                a.raw = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// Latency of the broker alone: a plain consumer reading the channel topic as the edge does.
fn broker_probe(
    settings: KafkaSettings,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        use rdkafka::Message;
        use rdkafka::consumer::Consumer;
        let consumer = settings.live_reader().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&topic, p, rdkafka::Offset::End)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut samples = Vec::new();
        let mut n = 0u64;
        // Same warm-up as the clients get.
        let warm = Instant::now() + Duration::from_secs(2);
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                n += 1;
                if n.is_multiple_of(8)
                    && Instant::now() > warm
                    && let Some(sent) = m.payload().and_then(sent_us)
                {
                    samples.push(now_us().saturating_sub(sent) as u32);
                }
            }
        }
        samples
    })
}

/// The edge's cumulative `pricefeed_edge_internal_latency_seconds` buckets: (upper bound, count).
fn internal_buckets(port: u16) -> Vec<(f64, u64)> {
    http_get(port, "/metrics")
        .lines()
        .filter_map(|l| l.strip_prefix("pricefeed_edge_internal_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The upper bound (ms) of the bucket holding quantile `q` of the samples between two scrapes.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let count = |b: &[(f64, u64)], le: f64| b.iter().find(|x| x.0 == le).map_or(0, |x| x.1);
    let total = after.last().map_or(0, |x| x.1) - before.last().map_or(0, |x| x.1);
    if total == 0 {
        return f64::NAN;
    }
    for (le, n) in after {
        if (n - count(before, *le)) as f64 >= q * total as f64 {
            return le * 1000.0;
        }
    }
    f64::NAN
}

fn target(max_rate: Option<f64>) -> Target {
    Target::Pricefeed {
        token: pf::token_with_rate(max_rate),
        topic: pf::CHANNEL.into(),
    }
}

fn main() {
    let a = args();
    raise_fd_limit();
    let broker = broker::Broker::start_own();
    let dir = tempfile::tempdir().unwrap();
    let symbols = pf::symbols(a.symbols);
    let cfg = dir.path().join("channels.toml");
    std::fs::write(&cfg, pf::config(&symbols)).unwrap();
    let settings: KafkaSettings = pf::kafka_settings(&broker.addr);
    let topic = format!("bench.{}", pf::CHANNEL);
    let raw_topic = "bench.raw".to_string();
    let rt = pf::runtime();
    pf::create_topics(
        &rt,
        &settings,
        &[topic.clone(), raw_topic.clone(), "bench.dlq".into()],
    );
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} cores; broker Apache Kafka (one node, same machine); edge: release build, separate process; {} symbols",
        a.symbols
    );

    // Phase 1: idle memory, on a fresh edge.
    if a.idle > 0 {
        let edge = pf::start_edge(&broker.addr, &cfg, &dir.path().join("edge-idle.log"));
        let pid = edge.child.id();
        std::thread::sleep(Duration::from_secs(1));
        let (_, rss_before) = proc_stats(pid);
        let idle = loadgen::connection_cap(a.idle);
        let fleet = Fleet::start(&rt, edge.port, &target(a.max_rate), idle, u64::MAX);
        std::thread::sleep(Duration::from_secs(2));
        let (_, rss_after) = proc_stats(pid);
        let n = fleet.counters.subscribed.load(Ordering::Relaxed);
        println!(
            "idle: {n} connections set up and subscribed; server RSS {} KiB → {} KiB: {:.2} KiB per connection",
            rss_before,
            rss_after,
            (rss_after.saturating_sub(rss_before)) as f64 / n.max(1) as f64
        );
        fleet.stop(&rt);
    }
    if a.rates.is_empty() {
        return;
    }

    // Phase 2: fan-out to `clients` clients at each offered rate.
    let edge = pf::start_edge(&broker.addr, &cfg, &dir.path().join("edge-fanout.log"));
    let pid = edge.child.id();
    let _transform = a
        .raw
        .then(|| pf::start_transform(&broker.addr, &cfg, &dir.path().join("transform.log")));
    println!(
        "fan-out: {} clients{} on one channel, {} s per rate, latency = {} record's send time → client read",
        a.clients,
        a.max_rate
            .map_or(String::new(), |r| format!(" throttled to {r}/s per symbol")),
        a.seconds,
        if a.raw {
            "raw (through a transform worker)"
        } else {
            "channel"
        }
    );
    println!(
        "| offered records/s | offered frames/s | delivered frames/s | p50 ms | p99 ms | max ms | in the edge p50 / p99 ms | gaps | conflated | edge CPU (cores) | clients + generator CPU (cores) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut broker_lines = Vec::new();
    for rate in &a.rates {
        // Sample about 20k latencies per second in total, whatever the rate.
        let sample_every = (rate * a.clients as u64 / 20_000).max(1);
        let fleet = Fleet::start(&rt, edge.port, &target(a.max_rate), a.clients, sample_every);
        let counters = fleet.counters.clone();
        let gen_stop = Arc::new(AtomicBool::new(false));
        let probe = broker_probe(settings.clone(), topic.clone(), gen_stop.clone());
        let gen_handle = pf::generator(
            settings.clone(),
            if a.raw {
                raw_topic.clone()
            } else {
                topic.clone()
            },
            symbols.clone(),
            *rate,
            a.raw,
            gen_stop.clone(),
        );
        // Until prices flow (a transform worker first joins its group), then a warm-up.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !counters.seen.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
        counters.recording.store(true, Ordering::Relaxed);
        let f0 = counters.frames.total();
        let held0 = internal_buckets(edge.port);
        let (cpu0, _) = proc_stats(pid);
        let (own0, _) = proc_stats(std::process::id());
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(a.seconds));
        let f1 = counters.frames.total();
        let held1 = internal_buckets(edge.port);
        let (cpu1, _) = proc_stats(pid);
        let (own1, _) = proc_stats(std::process::id());
        let secs = t0.elapsed().as_secs_f64();
        counters.recording.store(false, Ordering::Relaxed);
        gen_stop.store(true, Ordering::Relaxed);
        let _ = gen_handle.join();
        let broker_samples = probe.join().unwrap_or_default();
        let l = latency(fleet.stop(&rt));
        let ms = |f: fn(&loadgen::measure::Latency) -> f64| l.as_ref().map_or(f64::NAN, f);
        println!(
            "| {rate} | {} | {:.0} | {:.2} | {:.2} | {:.2} | ≤ {} / ≤ {} | {} | {} | {:.2} | {:.2} |",
            rate * a.clients as u64,
            (f1 - f0) as f64 / secs,
            ms(|l| l.p50),
            ms(|l| l.p99),
            ms(|l| l.max),
            bucket_quantile(&held0, &held1, 0.5),
            bucket_quantile(&held0, &held1, 0.99),
            counters.gaps.load(Ordering::Relaxed),
            counters.conflated.load(Ordering::Relaxed),
            (cpu1 - cpu0) / secs,
            (own1 - own0) / secs
        );
        broker_lines.push(format!("| {rate} | {} |", cell(latency(broker_samples))));
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("\nthe broker alone (a plain consumer of the same topic, record timestamp → poll):");
    println!("| offered records/s | p50 / p99 / max ms |\n|---:|---:|");
    for l in broker_lines {
        println!("{l}");
    }
}
