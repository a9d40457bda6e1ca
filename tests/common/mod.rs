//! Test fixtures: the Apache Kafka broker of the run (or a test's own), per-test topic and group
//! names, and helpers to produce, read back and run the `pricefeed` binary. Never a mock in place
//! of Kafka.
#![allow(dead_code)]

pub mod broker;
pub mod reconcile;
pub mod service;
pub mod sse;
pub mod tiers;
pub mod ws;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pricefeed::kafka::{KafkaSettings, ReadFrom, read_to_end};
use rdkafka::Message;
use rdkafka::config::FromClientConfig;
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub use broker::Broker;

/// Names unique to one test: topics `<prefix>.raw`, `<prefix>.<channel>`, `<prefix>.dlq`.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        test
    )
}

/// The `[kafka]` table for a test's topics.
pub fn kafka_table(prefix: &str, partitions: i32) -> String {
    format!(
        "[kafka]\nraw_topic = \"{prefix}.raw\"\nchannel_topic_prefix = \"{prefix}.\"\n\
         dead_letter_topic = \"{prefix}.dlq\"\nrules_topic = \"{prefix}.rules\"\n\
         partitions = {partitions}\nreplication_factor = 1\n"
    )
}

/// The `[kafka]` table for a test's topics with a delivery mode (`idempotent`, `transactional`).
pub fn kafka_table_with(prefix: &str, partitions: i32, delivery: &str) -> String {
    format!(
        "{}delivery = \"{delivery}\"\n",
        kafka_table(prefix, partitions)
    )
}

/// Writes `text` to a fresh file in a temp dir (kept alive by the returned guard).
pub fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("channels.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// Replaces a config file atomically (write + rename), as config managers do.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn settings(broker: &Broker) -> KafkaSettings {
    KafkaSettings {
        brokers: broker.addr.clone(),
        options: vec![],
    }
}

/// Produces `(partition, key, value)` records in order and waits for all acks.
pub fn produce(broker: &Broker, topic: &str, records: &[(i32, Option<&str>, &str)]) {
    let producer: BaseProducer =
        BaseProducer::from_config(&settings(broker).producer_config()).expect("producer");
    for (partition, key, value) in records {
        let mut r = BaseRecord::<str, str>::to(topic)
            .partition(*partition)
            .payload(*value);
        if let Some(k) = key {
            r = r.key(*k);
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// One record read back from Kafka.
#[derive(Clone, Debug)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub headers: HashMap<String, String>,
    /// The Kafka record time, ms since the epoch.
    pub timestamp: i64,
}

impl Rec {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.value).expect("json value")
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing on {self:?}"))
    }
}

/// Every record of `topic` (all `partitions`), ordered by partition then offset.
pub fn read_all(broker: &Broker, topic: &str, partitions: i32) -> Vec<Rec> {
    let reader = settings(broker).reader().expect("reader");
    if pricefeed::kafka::partition_count(&reader, topic)
        .expect("metadata")
        .is_none()
    {
        return Vec::new();
    }
    let starts: Vec<_> = (0..partitions)
        .map(|p| (topic.to_string(), p, ReadFrom::Offset(0)))
        .collect();
    let mut out: Vec<Rec> = Vec::new();
    read_to_end(&reader, &starts, Duration::from_secs(60), |m| {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Rec {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            headers,
            timestamp: m.timestamp().to_millis().unwrap_or(0),
        });
    })
    .expect("read topic");
    out.sort_by_key(|r| (r.partition, r.offset));
    out.dedup_by_key(|r| (r.partition, r.offset));
    out
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `pricefeed` child process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub http_port: u16,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on unix
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The process's Prometheus text, if it answers.
    pub fn metrics(&self) -> Option<String> {
        http_get(self.http_port, "/metrics")
    }

    /// The value of one metric line (exact name with labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics()?;
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pricefeed <args>` against `broker` with `config`, logging to a file in `log_dir`.
pub fn spawn_pricefeed(broker: &Broker, config: &Path, args: &[&str], log_dir: &Path) -> Proc {
    spawn_pricefeed_env(broker, config, args, log_dir, &[])
}

/// [`spawn_pricefeed`] with extra environment variables.
pub fn spawn_pricefeed_env(
    broker: &Broker,
    config: &Path,
    args: &[&str],
    log_dir: &Path,
    env: &[(&str, &str)],
) -> Proc {
    static N: AtomicU32 = AtomicU32::new(0);
    let http_port = free_port();
    let log = log_dir.join(format!(
        "pricefeed-{}.log",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pricefeed"));
    cmd.arg("--config")
        .arg(config)
        .arg("--brokers")
        .arg(&broker.addr);
    // Tests share one broker: each test's workers form a group of their own.
    if let Some(group) = test_group(config, args) {
        cmd.env("PRICEFEED_GROUP_ID", group);
    }
    let child = cmd
        .args(args)
        .env("PRICEFEED_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("RUST_LOG", "info,librdkafka=error,rdkafka=error")
        .env("PRICEFEED_JWT_SECRET", ws::SECRET)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("spawn pricefeed");
    Proc {
        child,
        http_port,
        log,
    }
}

/// The consumer group of a test's transform workers: the default group name
/// (`pricefeed-transform[-<channel>]`) prefixed with the test's raw topic, so tests sharing the
/// broker never share a group. `None` when the arguments name a group or run no transform.
fn test_group(config: &Path, args: &[&str]) -> Option<String> {
    if !args.iter().any(|a| matches!(*a, "run" | "transform")) || args.contains(&"--group-id") {
        return None;
    }
    let text = std::fs::read_to_string(config).ok()?;
    let raw = text.lines().find_map(|l| {
        let v = l
            .trim()
            .strip_prefix("raw_topic")?
            .trim()
            .strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_string())
    })?;
    let channel = args
        .iter()
        .position(|a| *a == "--channel")
        .and_then(|i| args.get(i + 1));
    Some(match channel {
        Some(c) => format!("{raw}.pricefeed-transform-{c}"),
        None => format!("{raw}.pricefeed-transform"),
    })
}

/// A minimal HTTP/1.1 GET on 127.0.0.1; `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (_, rest) = body.split_once("\r\n\r\n")?;
    Some(rest.to_string())
}

/// `[instruments.*]` tables for the test configs, from one list of realistic instruments.
pub fn instruments(symbols: &[&str]) -> String {
    symbols
        .iter()
        .map(|s| {
            let (tick, pip, precision) = match *s {
                "EURUSD" | "GBPUSD" => ("0.00001", "0.0001", 5),
                "USDJPY" => ("0.001", "0.01", 3),
                "BTCUSD" => ("0.01", "1", 2),
                "ES" => ("0.25", "0.25", 2),
                other => panic!("no test instrument {other}"),
            };
            format!(
                "[instruments.{s}]\ntick = \"{tick}\"\npip = \"{pip}\"\nprecision = {precision}\n\n"
            )
        })
        .collect()
}

/// Creates `topic` with `partitions` partitions, as the feed side would.
pub fn create_topic(broker: &Broker, topic: &str, partitions: i32) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(pricefeed::kafka::ensure_topics(
        &settings(broker),
        &[topic.to_string()],
        partitions,
        1,
    ))
    .expect("create topic");
}

/// Waits until the process's `/readyz` says ready.
pub fn wait_ready(p: &Proc, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = http_get(p.http_port, "/readyz");
        if answer.as_deref() == Some("ready\n") {
            return;
        }
        if Instant::now() >= deadline {
            let log = p.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "pricefeed was not ready within {timeout:?}; /readyz: {answer:?}; its log ends:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 POST on 127.0.0.1: the status code and the body.
pub fn http_post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    http_request(port, "POST", path, headers, body)
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 with `headers`: the status code and the body.
pub fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http_request(port, "GET", path, headers, "")
}

fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
