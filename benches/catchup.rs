//! Catching up must not hurt the others (not a test: it measures). An edge serves live clients
//! while prices flow through a transform worker; their latency (the generator's send time → the
//! client's read, p50/p99) is measured in three windows:
//! 1. baseline;
//! 2. while a second edge starts against the same topics;
//! 3. while `--replayers` more clients resume on the same edge from positions `--back` seconds
//!    behind the end (with `history_per_partition = 1000`, beyond memory: Kafka replays).
//!
//! Run: `cargo bench --bench catchup -- --live 200 --replayers 1000 --rate 200 --back 60
//! --replay-rate 100000` (`--replay-rate 0`: replays unlimited).
//! Results go to docs/benchmarks.md.

#[path = "../tests/common/broker.rs"]
mod broker;
mod loadgen;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loadgen::client::{Target, connect, frame_at, send_text};
use loadgen::fleet::Fleet;
use loadgen::measure::{cell, latency};
use loadgen::pricefeed::{self as pf, PARTITIONS, SECRET};
use loadgen::{flag, free_port, http_get, proc_stats, raise_fd_limit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(symbols: &[String], replay_rate: u64) -> String {
    let mut s = format!(
        "[kafka]\nraw_topic = \"bench.raw\"\nchannel_topic_prefix = \"bench.\"\n\
         dead_letter_topic = \"bench.dlq\"\npartitions = {PARTITIONS}\n\n\
         [edge]\nmax_connections = 60000\nhistory_per_partition = 1000\nmax_lag_records = 1000\n\
         replay_records_per_second = {replay_rate}\n\n"
    );
    for sym in symbols {
        s.push_str(&format!(
            "[instruments.{sym}]\ntick = \"0.00001\"\npip = \"0.0001\"\nprecision = 5\n\n"
        ));
    }
    s.push_str("[channels.bench]\nmarkup = { unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }\n");
    s
}

/// One client that resumes from `from` (per partition) and stops at `resumed`; the time it took.
async fn replayer(port: u16, token: String, from: Vec<i64>, done: Arc<AtomicU64>) -> Option<u64> {
    let started = Instant::now();
    let (mut s, mut buf) = connect(port, "/ws").await.ok()?;
    let from: Vec<String> = from
        .iter()
        .enumerate()
        .map(|(p, o)| format!("\"{p}\":{o}"))
        .collect();
    let setup = format!(
        r#"{{"type":"setup","token":"{token}","resume":{{"bench":{{{}}}}}}}"#,
        from.join(",")
    );
    send_text(&mut s, &setup).await.ok()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut at = 0;
        while let Some((op, head, len)) = frame_at(&buf[at..]) {
            let payload = &buf[at + head..at + head + len];
            if op == 0x9 {
                // A WebSocket ping: pong with the same payload (masked with zeros).
                let mut f = vec![0x8Au8, 0x80 | len as u8, 0, 0, 0, 0];
                f.extend_from_slice(payload);
                let _ = s.write_all(&f).await;
            }
            if payload.starts_with(b"{\"type\":\"resumed\"") {
                done.fetch_add(1, Ordering::Relaxed);
                return Some(started.elapsed().as_millis() as u64);
            }
            at += head + len;
        }
        buf.drain(..at);
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            s.read_buf(&mut buf),
        );
        match read.await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

fn window(rt: &tokio::runtime::Runtime, port: u16, live: usize, what: &str, during: impl FnOnce()) {
    let target = Target::Pricefeed {
        token: pf::token(),
        topic: pf::CHANNEL.into(),
    };
    let fleet = Fleet::start(rt, port, &target, live, 5);
    fleet.counters.recording.store(true, Ordering::Relaxed);
    let started = Instant::now();
    during();
    let took = started.elapsed();
    let gaps = fleet.counters.gaps.load(Ordering::Relaxed);
    let samples = fleet.stop(rt);
    println!(
        "{what:<48} {:>6.1} s  live latency p50/p99/max ms {}  gaps {gaps}",
        took.as_secs_f64(),
        cell(latency(samples))
    );
}

fn main() {
    raise_fd_limit();
    let live: usize = flag("--live", 200);
    let replayers: usize = flag("--replayers", 1000);
    let rate: u64 = flag("--rate", 200);
    let back: u64 = flag("--back", 60);
    // `[edge] replay_records_per_second` of the edge under test.
    let replay_rate: u64 = flag("--replay-rate", 0);
    let broker = broker::Broker::start_own();
    let dir = tempfile::tempdir().unwrap();
    let symbols = pf::symbols(10);
    let config_path = dir.path().join("channels.toml");
    std::fs::write(&config_path, config(&symbols, replay_rate)).unwrap();
    let settings = pf::kafka_settings(&broker.addr);
    let rt = pf::runtime();
    pf::create_topics(&rt, &settings, &["bench.raw".to_string()]);
    let _transform = pf::start_transform(&broker.addr, &config_path, &dir.path().join("t.log"));
    let edge = pf::start_edge(&broker.addr, &config_path, &dir.path().join("a.log"));
    let stop = Arc::new(AtomicBool::new(false));
    let feed = pf::generator(
        settings.clone(),
        "bench.raw".into(),
        symbols,
        rate,
        true,
        stop.clone(),
    );
    println!("filling {back} s of history at {rate} prices/s…");
    std::thread::sleep(Duration::from_secs(back + 5));
    let (cpu0, _) = proc_stats(edge.child.id());

    window(&rt, edge.port, live, "baseline (10 s)", || {
        std::thread::sleep(Duration::from_secs(10))
    });
    window(
        &rt,
        edge.port,
        live,
        "while a second edge starts (and 8 s after)",
        || {
            let port = free_port();
            let mut b = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
                .arg("--config")
                .arg(&config_path)
                .args([
                    "--brokers",
                    &broker.addr,
                    "edge",
                    "--http-addr",
                    &format!("127.0.0.1:{port}"),
                ])
                .env("PRICEFEED_JWT_SECRET", SECRET)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let t0 = Instant::now();
            while http_get(port, "/readyz") != "ready\n" && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(20));
            }
            println!(
                "  second edge ready after {:.2} s",
                t0.elapsed().as_secs_f64()
            );
            std::thread::sleep(Duration::from_secs(8));
            let _ = b.kill();
            let _ = b.wait();
        },
    );
    // Positions `back` seconds behind each partition's end.
    let reader = settings.reader().unwrap();
    let per_partition = (rate * back / PARTITIONS as u64) as i64;
    let from: Vec<i64> = (0..PARTITIONS)
        .map(|p| {
            use rdkafka::consumer::Consumer;
            let (low, high) = reader
                .fetch_watermarks("bench.bench", p, Duration::from_secs(10))
                .unwrap();
            (high - per_partition).max(low)
        })
        .collect();
    let done = Arc::new(AtomicU64::new(0));
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    window(
        &rt,
        edge.port,
        live,
        &format!("while {replayers} clients replay {back} s"),
        || {
            let token = pf::token();
            let handles: Vec<_> = (0..replayers)
                .map(|_| {
                    rt.spawn(replayer(
                        edge.port,
                        token.clone(),
                        from.clone(),
                        done.clone(),
                    ))
                })
                .collect();
            for h in handles {
                if let Ok(Some(ms)) = rt.block_on(h) {
                    times.lock().unwrap().push(ms as u32 * 1000);
                }
            }
        },
    );
    let t = times.lock().unwrap().clone();
    println!(
        "  {} of {replayers} resumed ({} records each); time to resumed p50/p99/max ms {}",
        done.load(Ordering::Relaxed),
        per_partition * PARTITIONS as i64,
        cell(latency(t))
    );
    let (cpu1, rss) = proc_stats(edge.child.id());
    println!(
        "  edge CPU over the run {:.1} s, RSS {} MiB",
        cpu1 - cpu0,
        rss / 1024
    );
    stop.store(true, Ordering::Relaxed);
    let _ = feed.join();
    let log = std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default();
    let mut warnings: std::collections::BTreeMap<String, usize> = Default::default();
    for l in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        let key: String = l
            .split_whitespace()
            .skip(2)
            .take(12)
            .collect::<Vec<_>>()
            .join(" ");
        *warnings.entry(key).or_default() += 1;
    }
    for (w, n) in warnings {
        println!("  edge log ({n}×): {w}");
    }
}
