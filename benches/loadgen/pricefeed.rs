//! pricefeed's side of a benchmark: a `pricefeed edge` process on a throwaway broker, a client
//! token, and the generator that writes channel records into Kafka at a fixed rate.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pricefeed::edge::auth::{Claims, sign_hs256};
use pricefeed::kafka::KafkaSettings;
use rdkafka::config::FromClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::client::{price_data, raw_price};
use super::{free_port, http_get, now_us};

pub const SECRET: &str = "fanout-bench-secret-0123456789abcdefgh";
pub const PARTITIONS: i32 = 3;
/// The channel; its topic is `bench.bench`.
pub const CHANNEL: &str = "bench";
pub const SYMBOLS: [&str; 10] = [
    "EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "USDCAD", "NZDUSD", "EURGBP", "EURJPY",
    "XAUUSD",
];

/// `channels.toml` for the edge: one channel, `symbols` instruments. `BENCH_DELIVERY`
/// (`idempotent`, `transactional`) sets the transform's delivery mode.
pub fn config(symbols: &[String]) -> String {
    let delivery = std::env::var("BENCH_DELIVERY").unwrap_or_else(|_| "idempotent".into());
    // `[edge] coalesce_ms` of the edge under test (default 0).
    let coalesce = std::env::var("BENCH_COALESCE_MS").unwrap_or_else(|_| "0".into());
    let mut s = format!(
        "[kafka]\nraw_topic = \"bench.raw\"\nchannel_topic_prefix = \"bench.\"\n\
         dead_letter_topic = \"bench.dlq\"\npartitions = {PARTITIONS}\ndelivery = \"{delivery}\"\n\n\
         [edge]\nmax_connections = 60000\nheartbeat_ms = 60000\nsetup_timeout_ms = 60000\n\
         coalesce_ms = {coalesce}\n\n"
    );
    for sym in symbols {
        s.push_str(&format!(
            "[instruments.{sym}]\ntick = \"0.00001\"\npip = \"0.0001\"\nprecision = 5\n\n"
        ));
    }
    s.push_str("[channels.bench]\nmarkup = { unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }\n");
    s
}

/// The runtime the benchmarks drive their clients on (two workers: the machine's cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Creates `topics` (`PARTITIONS` partitions, one replica) where missing.
pub fn create_topics(rt: &tokio::runtime::Runtime, settings: &KafkaSettings, topics: &[String]) {
    rt.block_on(pricefeed::kafka::ensure_topics(
        settings, topics, PARTITIONS, 1,
    ))
    .expect("creating the benchmark's topics");
}

/// `BENCH_KAFKA_OPTIONS` (`key=value,…`) as Kafka settings for the generator and the edge.
pub fn kafka_settings(brokers: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.to_string(),
        options: std::env::var("BENCH_KAFKA_OPTIONS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub fn token() -> String {
    token_with_rate(None)
}

/// A token whose `max_rate` throttles every subscription to that many updates per second per
/// symbol (`None`: not throttled).
pub fn token_with_rate(max_rate: Option<f64>) -> String {
    sign_hs256(
        &Claims {
            sub: "bench".into(),
            channels: vec![CHANNEL.into()],
            symbols: None,
            publish: false,
            exp: (now_us() / 1_000_000) + 3600,
            nbf: None,
            max_rate,
            iss: None,
            aud: None,
        },
        SECRET.as_bytes(),
    )
    .unwrap()
}

/// A running `pricefeed` process (an edge or a transform worker), killed on drop.
pub struct Node {
    pub child: Child,
    pub port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pricefeed edge` (the release binary cargo bench built) and waits until it is ready.
pub fn start_edge(brokers: &str, config: &Path, log: &Path) -> Node {
    start(&["edge"], brokers, config, log)
}

/// Starts a `pricefeed transform` worker for every channel and waits until it is ready.
/// `BENCH_COMMIT_INTERVAL_MS` sets its commit interval.
pub fn start_transform(brokers: &str, config: &Path, log: &Path) -> Node {
    match std::env::var("BENCH_COMMIT_INTERVAL_MS") {
        Ok(ms) => start(
            &["transform", "--no-watch", "--commit-interval-ms", &ms],
            brokers,
            config,
            log,
        ),
        Err(_) => start(&["transform", "--no-watch"], brokers, config, log),
    }
}

fn start(role: &[&str], brokers: &str, config: &Path, log: &Path) -> Node {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pricefeed"));
    if let Ok(options) = std::env::var("BENCH_KAFKA_OPTIONS") {
        cmd.env("PRICEFEED_KAFKA_OPTIONS", options);
    }
    let child = cmd
        .args(["--config"])
        .arg(config)
        .args(["--brokers", brokers])
        .args(role)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("PRICEFEED_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn pricefeed");
    // A Node from the start, so that a process that never becomes ready is killed on the panic.
    let node = Node { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/readyz") != "ready\n" {
        assert!(
            Instant::now() < deadline,
            "pricefeed {} did not become ready; its log:\n{}",
            role[0],
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    node
}

/// Writes records into `topic` at `rate` per second until `stop`, on its own thread: channel
/// records (straight to the edge), or with `raw` raw prices (through the transform). Each
/// symbol keeps its partition. Returns the count.
pub fn generator(
    settings: KafkaSettings,
    topic: String,
    symbols: Vec<String>,
    rate: u64,
    raw: bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let producer: BaseProducer =
            BaseProducer::from_config(&settings.producer_config()).unwrap();
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let i = sent as usize % symbols.len();
                let sym = &symbols[i];
                let value = if raw {
                    raw_price(sent, sym)
                } else {
                    price_data(sent, sym)
                };
                let p = i as i32 % PARTITIONS;
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

/// `n` instrument symbols: the ten majors, then `SYM010`, `SYM011`, ….
pub fn symbols(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            SYMBOLS
                .get(i)
                .map_or_else(|| format!("SYM{i:03}"), |s| s.to_string())
        })
        .collect()
}
