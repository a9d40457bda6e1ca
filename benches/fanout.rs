//! Fan-out benchmark of the WebSocket edge (not a test: it asserts nothing, it measures).
//!
//! Starts a Tansu broker and a `pricefeed edge` process, writes channel records straight into
//! `prices.bench` at a fixed rate (each carrying its send time), and drives WebSocket clients
//! from this process with a lean client (raw frames, no JSON parsing) so that the load generator
//! costs as little of the 2 cores as possible. Reports, per phase:
//! - idle memory: server RSS per connection with N connections set up and subscribed;
//! - fan-out: frames/s delivered to C clients at offered rates, latency from the record's
//!   timestamp to the client's read (p50/p99), gaps and conflations, server CPU.
//!
//! Run: `cargo bench --bench fanout` (options after `--`: `--clients 1000 --idle 10000
//! --rates 200,1000,3000 --seconds 8`). Results go to docs/benchmarks.md.

#[path = "../tests/common/broker.rs"]
mod broker;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pricefeed::edge::auth::{Claims, sign_hs256};
use pricefeed::kafka::KafkaSettings;
use rdkafka::config::FromClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "fanout-bench-secret-0123456789abcdefgh";
const PARTITIONS: i32 = 3;
const SYMBOLS: [&str; 10] = [
    "EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "USDCAD", "NZDUSD", "EURGBP", "EURJPY",
    "XAUUSD",
];

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

struct Args {
    clients: usize,
    idle: usize,
    rates: Vec<u64>,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        clients: 1000,
        idle: 10_000,
        rates: vec![200, 1000, 2000, 3000, 4000],
        seconds: 8,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--clients" => a.clients = v.parse().unwrap(),
            "--idle" => a.idle = v.parse().unwrap(),
            "--rates" => a.rates = v.split(',').map(|r| r.parse().unwrap()).collect(),
            "--seconds" => a.seconds = v.parse().unwrap(),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn config(prefix: &str) -> String {
    let mut s = format!(
        "[kafka]\nraw_topic = \"{prefix}.raw\"\nchannel_topic_prefix = \"{prefix}.\"\n\
         dead_letter_topic = \"{prefix}.dlq\"\npartitions = {PARTITIONS}\n\n\
         [edge]\nmax_connections = 60000\nheartbeat_ms = 60000\nsetup_timeout_ms = 60000\n\n"
    );
    for sym in SYMBOLS {
        s.push_str(&format!(
            "[instruments.{sym}]\ntick = \"0.00001\"\npip = \"0.0001\"\nprecision = 5\n\n"
        ));
    }
    s.push_str("[channels.bench]\nmarkup = { unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }\n");
    s
}

/// Server process CPU time (user + system) in seconds, and RSS in KiB.
fn proc_stats(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss)
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    conflated: AtomicU64,
    gaps: AtomicU64,
    connected: AtomicU64,
    subscribed: AtomicU64,
}

/// Sends one masked text frame (clients must mask).
async fn send_text(s: &mut TcpStream, text: &str) -> std::io::Result<()> {
    let payload = text.as_bytes();
    let mut f = vec![0x81u8];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `partition` and `seqNo` of a message frame: they follow the topic at the start, so a short
/// scan from the front finds them.
fn partition_and_seq(frame: &[u8]) -> Option<(u64, u64)> {
    let at = find(&frame[..frame.len().min(96)], b"\"partition\":")? + 12;
    let mut p = 0u64;
    let mut i = at;
    while i < frame.len() && frame[i].is_ascii_digit() {
        p = p * 10 + u64::from(frame[i] - b'0');
        i += 1;
    }
    let rest = &frame[i..];
    let seq = rest.strip_prefix(b",\"seqNo\":")?;
    let mut n = 0u64;
    for b in seq {
        if !b.is_ascii_digit() {
            break;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some((p, n))
}

/// The generator's `sent_us`, the last field of the record: read backwards from the end.
fn sent_us(frame: &[u8]) -> Option<u64> {
    let end = frame.len().checked_sub(2)?; // `}}`
    let mut start = end;
    while start > 0 && frame[start - 1].is_ascii_digit() {
        start -= 1;
    }
    if !frame[..start].ends_with(b"\"sent_us\":") {
        return None;
    }
    std::str::from_utf8(&frame[start..end]).ok()?.parse().ok()
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
        let consumer = pricefeed::edge::reader::consumer(&settings).unwrap();
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
                    && let Some(sent) = m.payload().and_then(|v| sent_us(&[v, b"}"].concat()))
                {
                    samples.push(now_us().saturating_sub(sent) as u32);
                }
            }
        }
        samples
    })
}

/// One client: handshake, setup, subscribe, then read frames until `stop`, counting messages,
/// checking seqNo continuity per partition and sampling latency every `sample_every` frames.
async fn client(
    port: u16,
    token: String,
    counters: Arc<Counters>,
    recording: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    sample_every: u64,
) -> Vec<u32> {
    let mut samples = Vec::new();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return samples;
    };
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return samples;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Response headers.
    loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return samples;
        };
        if n == 0 {
            return samples;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            buf.drain(..end + 4);
            break;
        }
    }
    counters.connected.fetch_add(1, Ordering::Relaxed);
    if std::env::var("BENCH_IDLE_RAW").is_ok() {
        counters.subscribed.fetch_add(1, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return samples;
    }
    let setup = format!(r#"{{"type":"setup","token":"{token}","topics":["bench"]}}"#);
    if send_text(&mut s, &setup).await.is_err() {
        return samples;
    }
    let mut last_seq = [-1i64; PARTITIONS as usize];
    let mut seen = 0u64;
    let mut frames = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Parse every complete frame in the buffer.
        let mut at = 0;
        while buf.len() - at >= 2 {
            let (b0, b1) = (buf[at], buf[at + 1]);
            let (len, head) = match b1 & 0x7f {
                126 if buf.len() - at >= 4 => {
                    (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4)
                }
                127 if buf.len() - at >= 10 => (
                    u64::from_be_bytes(buf[at + 2..at + 10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() - at < head + len {
                break;
            }
            let payload = &buf[at + head..at + head + len];
            match b0 & 0x0f {
                0x1 => {
                    if payload.starts_with(b"{\"type\":\"message\"") {
                        let rec = recording.load(Ordering::Relaxed);
                        if payload[17..].starts_with(b",\"conflated\"") && rec {
                            counters.conflated.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some((p, seq)) = partition_and_seq(payload) {
                            let p = p as usize % PARTITIONS as usize;
                            if last_seq[p] >= 0 && seq as i64 != last_seq[p] + 1 && rec {
                                counters.gaps.fetch_add(1, Ordering::Relaxed);
                            }
                            last_seq[p] = seq as i64;
                        }
                        if rec {
                            frames += 1;
                            seen += 1;
                            if seen.is_multiple_of(sample_every)
                                && let Some(sent) = sent_us(payload)
                            {
                                samples.push(now_us().saturating_sub(sent) as u32);
                            }
                        }
                    } else if payload.starts_with(b"{\"type\":\"snapshot\"") {
                        counters.subscribed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                0x9 => {
                    // Pong with the same payload, masked.
                    let mut f = vec![0x8Au8, 0x80 | len as u8, 0, 0, 0, 0];
                    f.extend_from_slice(payload);
                    let _ = s.write_all(&f).await;
                }
                0x8 => return samples,
                _ => {}
            }
            at += head + len;
        }
        buf.drain(..at);
        if frames >= 64 {
            counters.frames.fetch_add(frames, Ordering::Relaxed);
            frames = 0;
        }
        let n = match tokio::time::timeout(Duration::from_millis(200), s.read(&mut chunk)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    counters.frames.fetch_add(frames, Ordering::Relaxed);
    samples
}

/// Writes channel records straight into the channel topic at `rate` per second until `stop`.
fn generator(
    settings: KafkaSettings,
    topic: String,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let producer: BaseProducer =
            BaseProducer::from_config(&settings.producer_config()).unwrap();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut value = String::with_capacity(160);
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let i = sent as usize;
                let sym = SYMBOLS[i % SYMBOLS.len()];
                let us = now_us();
                value.clear();
                use std::fmt::Write;
                let _ = write!(
                    value,
                    r#"{{"symbol":"{sym}","bid":"1.{:05}","ask":"1.{:05}","ts":{},"stale":false,"sent_us":{us}}}"#,
                    10_000 + i % 50_000,
                    10_003 + i % 50_000,
                    us / 1000
                );
                let p = (i % SYMBOLS.len()) as i32 % PARTITIONS;
                let mut r = BaseRecord::to(&topic).partition(p).key(sym).payload(&value);
                loop {
                    match producer.send(r) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            producer.poll(Duration::from_millis(1));
                            r = back;
                        }
                    }
                }
                sent += 1;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(500));
        }
        let _ = producer.flush(Duration::from_secs(10));
        sent
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
    for (le, n) in after {
        if (n - count(before, *le)) as f64 >= q * total as f64 {
            return le * 1000.0;
        }
    }
    f64::NAN
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

struct Edge {
    child: Child,
    port: u16,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_edge(broker: &broker::Broker, config: &std::path::Path, log: &std::path::Path) -> Edge {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .args(["--config"])
        .arg(config)
        .args(["--brokers", &broker.addr, "edge"])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("PRICEFEED_JWT_SECRET", SECRET)
        .env(
            "PRICEFEED_KAFKA_OPTIONS",
            std::env::var("BENCH_KAFKA_OPTIONS").unwrap_or_default(),
        )
        .env("RUST_LOG", "warn")
        .envs(
            std::env::var("BENCH_EDGE_ENV")
                .ok()
                .and_then(|v| {
                    v.split_once('=')
                        .map(|(k, v)| vec![(k.to_string(), v.to_string())])
                })
                .unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn pricefeed edge");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/readyz") != "ready\n" {
        assert!(
            Instant::now() < deadline,
            "the edge did not become ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Edge { child, port }
}

fn main() {
    let a = args();
    raise_fd_limit();
    let broker = broker::Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let prefix = "bench";
    let cfg = dir.path().join("channels.toml");
    std::fs::write(&cfg, config(prefix)).unwrap();
    let settings = KafkaSettings {
        brokers: broker.addr.clone(),
        options: std::env::var("BENCH_KAFKA_OPTIONS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let topic = format!("{prefix}.bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(pricefeed::kafka::ensure_topics(
        &settings,
        std::slice::from_ref(&topic),
        PARTITIONS,
        1,
    ))
    .unwrap();
    let token = sign_hs256(
        &Claims {
            sub: "bench".into(),
            channels: vec!["bench".into()],
            symbols: None,
            publish: false,
            exp: (now_us() / 1_000_000) + 3600,
            iss: None,
            aud: None,
        },
        SECRET.as_bytes(),
    )
    .unwrap();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} cores; broker Tansu (in memory); edge: release build, separate process"
    );

    // Phase 1: idle memory, on a fresh edge.
    if a.idle > 0 {
        let edge = start_edge(&broker, &cfg, &dir.path().join("edge-idle.log"));
        let pid = edge.child.id();
        std::thread::sleep(Duration::from_secs(1));
        let (_, rss_before) = proc_stats(pid);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let recording = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..a.idle {
            handles.push(rt.spawn(client(
                edge.port,
                token.clone(),
                counters.clone(),
                recording.clone(),
                stop.clone(),
                u64::MAX,
            )));
            if handles.len() % 500 == 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while (counters.subscribed.load(Ordering::Relaxed) as usize) < a.idle
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        let (_, rss_after) = proc_stats(pid);
        let n = counters.subscribed.load(Ordering::Relaxed);
        println!(
            "idle: {n} connections set up and subscribed; server RSS {} KiB → {} KiB: {:.2} KiB per connection",
            rss_before,
            rss_after,
            (rss_after.saturating_sub(rss_before)) as f64 / n.max(1) as f64
        );
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = rt.block_on(h);
        }
    }

    // Phase 2: fan-out to `clients` clients at each offered rate.
    let edge = start_edge(&broker, &cfg, &dir.path().join("edge-fanout.log"));
    let pid = edge.child.id();
    println!(
        "fan-out: {} clients on one channel, {} s per rate, latency = record timestamp → client read",
        a.clients, a.seconds
    );
    println!(
        "| offered records/s | offered frames/s | delivered frames/s | p50 ms | p99 ms | max ms | in the edge p50 / p99 ms | gaps | conflated | edge CPU (cores) | clients + generator CPU (cores) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut broker_lines = Vec::new();
    for rate in &a.rates {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let recording = Arc::new(AtomicBool::new(false));
        // Sample about 20k latencies per second in total, whatever the rate.
        let sample_every = (rate * a.clients as u64 / 20_000).max(1);
        let handles: Vec<_> = (0..a.clients)
            .map(|_| {
                rt.spawn(client(
                    edge.port,
                    token.clone(),
                    counters.clone(),
                    recording.clone(),
                    stop.clone(),
                    sample_every,
                ))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (counters.subscribed.load(Ordering::Relaxed) as usize) < a.clients
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let gen_stop = Arc::new(AtomicBool::new(false));
        let probe = broker_probe(settings.clone(), topic.clone(), gen_stop.clone());
        let gen_handle = generator(settings.clone(), topic.clone(), *rate, gen_stop.clone());
        // Warm up, then measure.
        std::thread::sleep(Duration::from_secs(2));
        recording.store(true, Ordering::Relaxed);
        let f0 = counters.frames.load(Ordering::Relaxed);
        let held0 = internal_buckets(edge.port);
        let (cpu0, _) = proc_stats(pid);
        let (own0, _) = proc_stats(std::process::id());
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(a.seconds));
        let f1 = counters.frames.load(Ordering::Relaxed);
        let held1 = internal_buckets(edge.port);
        let (cpu1, _) = proc_stats(pid);
        let (own1, _) = proc_stats(std::process::id());
        let secs = t0.elapsed().as_secs_f64();
        recording.store(false, Ordering::Relaxed);
        gen_stop.store(true, Ordering::Relaxed);
        let _ = gen_handle.join();
        let mut broker_samples = probe.join().unwrap_or_default();
        broker_samples.sort_unstable();
        stop.store(true, Ordering::Relaxed);
        let mut samples: Vec<u32> = Vec::new();
        for h in handles {
            if let Ok(s) = rt.block_on(h) {
                samples.extend(s);
            }
        }
        samples.sort_unstable();
        println!(
            "| {rate} | {} | {:.0} | {:.2} | {:.2} | {:.2} | ≤ {} / ≤ {} | {} | {} | {:.2} | {:.2} |",
            rate * a.clients as u64,
            (f1 - f0) as f64 / secs,
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            percentile(&samples, 1.0),
            bucket_quantile(&held0, &held1, 0.5),
            bucket_quantile(&held0, &held1, 0.99),
            counters.gaps.load(Ordering::Relaxed),
            counters.conflated.load(Ordering::Relaxed),
            (cpu1 - cpu0) / secs,
            (own1 - own0) / secs
        );
        broker_lines.push(format!(
            "| {rate} | {:.2} | {:.2} | {:.2} |",
            percentile(&broker_samples, 0.5),
            percentile(&broker_samples, 0.99),
            percentile(&broker_samples, 1.0)
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("\nthe broker alone (a plain consumer of the same topic, record timestamp → poll):");
    println!("| offered records/s | p50 ms | p99 ms | max ms |\n|---:|---:|---:|---:|");
    for l in broker_lines {
        println!("{l}");
    }
}
