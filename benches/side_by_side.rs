//! pricefeed's edge side by side with the seeds' stack, in one run on one machine (not a test: it
//! measures). In turn: pricefeed's edge (fed through Kafka), a minimal Socket.IO room broadcast
//! (`loadtest/compare/socketio-server.mjs`, npm `socket.io`) and a plain `ws` broadcast
//! (`loadtest/compare/ws-server.mjs`), each driven by the same lean load client
//! (`benches/loadgen`) at the same offered rates. The Node.js servers are fed by a publisher on
//! one WebSocket connection with prices in the shape of pricefeed's `message` frames (same fields,
//! same size), so every client parses the same bytes and measures latency the same way: from
//! the generator's send time to the client's read.
//!
//! For each server: idle memory (RSS per connection with N connections subscribed), then per
//! offered rate, on a fresh server process: delivered frames/s to C clients, latency p50/p99/max
//! (HDR histogram), seqNo gaps, server CPU. Then a table with the ratios.
//!
//! Run: `loadtest/side-by-side.sh` (installs the npm packages, then `cargo bench --bench
//! side_by_side -- --clients 1000 --idle 10000 --rates 50,200,1000,3000 --seconds 6`). Results go
//! to docs/benchmarks.md.

#[path = "../tests/common/broker.rs"]
mod broker;
mod loadgen;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loadgen::client::Target;
use loadgen::fleet::Fleet;
use loadgen::measure::{Latency, cell, latency};
use loadgen::pricefeed::{self as pf, PARTITIONS};
use loadgen::{free_port, proc_stats, raise_fd_limit};

struct Args {
    clients: usize,
    idle: usize,
    rates: Vec<u64>,
    seconds: u64,
    only: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        clients: 1000,
        idle: 10_000,
        rates: vec![50, 200, 1000, 3000],
        seconds: 6,
        only: vec!["pricefeed".into(), "socketio".into(), "ws".into()],
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
            "--only" => a.only = v.split(',').map(str::to_string).collect(),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// A server under test: its process (stopped on drop), port and how clients talk to it.
struct Server {
    process: Process,
    port: u16,
    target: Target,
}

enum Process {
    Edge(pf::Node),
    Node(Child),
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Process::Node(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    fn pid(&self) -> u32 {
        match &self.process {
            Process::Edge(e) => e.child.id(),
            Process::Node(c) => c.id(),
        }
    }
}

fn name_of(which: &str) -> &'static str {
    match which {
        "pricefeed" => "pricefeed edge",
        "socketio" => "Socket.IO 4.8 room broadcast",
        "ws" => "ws 8.18 broadcast",
        other => panic!("--only: unknown server {other} (pricefeed, socketio, ws)"),
    }
}

/// Everything pricefeed needs: the broker, the config, the topic.
struct Kafka {
    broker: broker::Broker,
    dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
    topic: String,
}

fn start(which: &str, kafka: &Kafka) -> Server {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match which {
        "pricefeed" => {
            let edge = pf::start_edge(
                &kafka.broker.addr,
                &kafka.cfg,
                &kafka.dir.path().join("edge.log"),
            );
            Server {
                port: edge.port,
                process: Process::Edge(edge),
                target: Target::Pricefeed {
                    token: pf::token(),
                    topic: pf::CHANNEL.into(),
                },
            }
        }
        "socketio" | "ws" => {
            let (script, target) = if which == "ws" {
                ("ws-server.mjs", Target::Ws)
            } else {
                ("socketio-server.mjs", Target::SocketIo)
            };
            let port = free_port();
            let mut child = Command::new("node")
                .arg(root.join("loadtest/compare").join(script))
                .arg(port.to_string())
                .current_dir(root.join("loadtest/compare"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("node (Node.js) must be installed");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(
                line.trim(),
                "ready",
                "{script} did not start (run `npm ci` in loadtest/compare, or use loadtest/side-by-side.sh)"
            );
            Server {
                process: Process::Node(child),
                port,
                target,
            }
        }
        other => panic!("--only: unknown server {other} (pricefeed, socketio, ws)"),
    }
}

/// The generator of one run: Kafka records for pricefeed, a WebSocket publisher for the others.
enum Feed {
    Kafka(std::thread::JoinHandle<u64>),
    WebSocket(tokio::task::JoinHandle<u64>),
}

/// One offered rate against one server.
struct Row {
    /// Clients that subscribed.
    clients: usize,
    /// Prices/s the generator sent (a saturated server can hold a WebSocket publisher back).
    published: f64,
    delivered: f64,
    latency: Option<Latency>,
    gaps: u64,
    cpu: f64,
    /// The load clients and the generator (this process).
    clients_cpu: f64,
}

fn main() {
    let a = args();
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let symbols = pf::symbols(pf::SYMBOLS.len());
    let kafka = {
        let broker = broker::Broker::start_own();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("channels.toml");
        std::fs::write(&cfg, pf::config(&symbols)).unwrap();
        let topic = format!("bench.{}", pf::CHANNEL);
        rt.block_on(pricefeed::kafka::ensure_topics(
            &pf::kafka_settings(&broker.addr),
            std::slice::from_ref(&topic),
            PARTITIONS,
            1,
        ))
        .unwrap();
        Kafka {
            broker,
            dir,
            cfg,
            topic,
        }
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} cores; servers, load clients and generator on the same machine; \
         {} clients, {} s per rate after a 2 s warm-up; pricefeed fed through Apache Kafka, the \
         Node.js servers by a WebSocket publisher",
        a.clients, a.seconds
    );

    let mut idle: Vec<(String, f64, u64)> = Vec::new();
    let mut rows: Vec<(String, Vec<Row>)> = Vec::new();
    for which in &a.only {
        let name = name_of(which).to_string();
        // Idle memory, on a fresh server.
        if a.idle > 0 {
            let server = start(which, &kafka);
            std::thread::sleep(Duration::from_secs(1));
            let (_, before) = proc_stats(server.pid());
            let n = loadgen::connection_cap(a.idle);
            let fleet = Fleet::start(&rt, server.port, &server.target, n, u64::MAX);
            std::thread::sleep(Duration::from_secs(2));
            let (_, after) = proc_stats(server.pid());
            let n = fleet.counters.subscribed.load(Ordering::Relaxed);
            let per = after.saturating_sub(before) as f64 / n.max(1) as f64;
            println!(
                "{name}: idle: {n} connections subscribed; RSS {before} KiB → {after} KiB: {per:.2} KiB per connection"
            );
            idle.push((name.clone(), per, n));
            fleet.stop(&rt);
        }
        let mut per_rate = Vec::new();
        for &rate in &a.rates {
            // A fresh process per rate: a backlog left by an overloaded run must not leak into
            // the next one.
            let server = start(which, &kafka);
            let sample_every = (rate * a.clients as u64 / 20_000).max(1);
            let fleet = Fleet::start(&rt, server.port, &server.target, a.clients, sample_every);
            let fleet_clients = fleet.subscribed();
            let counters = fleet.counters.clone();
            let feed_stop = Arc::new(AtomicBool::new(false));
            let t_feed = Instant::now();
            let feed = match &server.target {
                Target::Pricefeed { .. } => Feed::Kafka(pf::generator(
                    pf::kafka_settings(&kafka.broker.addr),
                    kafka.topic.clone(),
                    symbols.clone(),
                    rate,
                    false,
                    feed_stop.clone(),
                )),
                target => Feed::WebSocket(rt.spawn(loadgen::client::publish(
                    server.port,
                    target.clone(),
                    rate,
                    PARTITIONS as u64,
                    &pf::SYMBOLS,
                    feed_stop.clone(),
                ))),
            };
            std::thread::sleep(Duration::from_secs(2));
            counters.recording.store(true, Ordering::Relaxed);
            let f0 = counters.frames.total();
            let (cpu0, _) = proc_stats(server.pid());
            let (own0, _) = proc_stats(std::process::id());
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs(a.seconds));
            let f1 = counters.frames.total();
            let (cpu1, _) = proc_stats(server.pid());
            let (own1, _) = proc_stats(std::process::id());
            let secs = t0.elapsed().as_secs_f64();
            counters.recording.store(false, Ordering::Relaxed);
            feed_stop.store(true, Ordering::Relaxed);
            // What the generator managed to send over the whole run (warm-up included).
            let fed_secs = t_feed.elapsed().as_secs_f64();
            let fed = match feed {
                Feed::Kafka(h) => h.join().unwrap_or(0),
                Feed::WebSocket(h) => rt.block_on(h).unwrap_or(0),
            };
            let gaps = counters.gaps.load(Ordering::Relaxed);
            let samples = fleet.stop(&rt);
            let row = Row {
                clients: fleet_clients,
                published: fed as f64 / fed_secs,
                delivered: (f1 - f0) as f64 / secs,
                latency: latency(samples),
                gaps,
                cpu: (cpu1 - cpu0) / secs,
                clients_cpu: (own1 - own0) / secs,
            };
            println!(
                "{name}: {rate} prices/s offered ({:.0} sent) × {} clients: {:.0} frames/s delivered, latency p50 / p99 / max {} ms, {} gaps, server CPU {:.2} cores",
                row.published,
                row.clients,
                row.delivered,
                cell(row.latency),
                row.gaps,
                row.cpu
            );
            per_rate.push(row);
            drop(server);
            std::thread::sleep(Duration::from_millis(500));
        }
        rows.push((name, per_rate));
    }
    report(&a, &idle, &rows);
}

fn report(a: &Args, idle: &[(String, f64, u64)], rows: &[(String, Vec<Row>)]) {
    println!();
    println!(
        "| offered prices/s (× {} clients = frames/s) | server | prices/s sent | delivered frames/s | × pricefeed's | p50 / p99 / max ms | p99 × pricefeed's | gaps | server CPU (cores) | clients CPU (cores) |",
        a.clients
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows.iter().find(|(n, _)| n.starts_with("pricefeed"));
    for (i, rate) in a.rates.iter().enumerate() {
        for (name, per_rate) in rows {
            let r = &per_rate[i];
            let ratio = base.map_or("–".into(), |(_, b)| {
                format!("{:.2}", r.delivered / b[i].delivered.max(1.0))
            });
            let p99_ratio = base
                .and_then(|(_, b)| Some(r.latency?.p99 / b[i].latency?.p99))
                .map_or("–".into(), |x| format!("{x:.2}"));
            println!(
                "| {rate} ({}) | {name} | {:.0} | {:.0} | {ratio} | {} | {p99_ratio} | {} | {:.2} | {:.2} |",
                rate * a.clients as u64,
                r.published,
                r.delivered,
                cell(r.latency),
                r.gaps,
                r.cpu,
                r.clients_cpu
            );
        }
    }
    if !idle.is_empty() {
        println!();
        println!("| server | connections | RSS per idle connection | × pricefeed's |");
        println!("|---|---:|---:|---:|");
        let base = idle
            .iter()
            .find(|(n, _, _)| n.starts_with("pricefeed"))
            .map(|x| x.1);
        for (name, per, n) in idle {
            let ratio = base.map_or("–".into(), |b| format!("{:.1}", per / b.max(0.01)));
            println!("| {name} | {n} | {per:.2} KiB | {ratio} |");
        }
    }
}
