//! Logs and metrics: metric names as constants, one function per event, and the Prometheus
//! recorder behind `/metrics`. Label sets are bounded (channels, reasons, partitions), never per
//! record or per client.

use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

pub const RAW_RECORDS: &str = "pricefeed_raw_records_total";
pub const CHANNEL_RECORDS: &str = "pricefeed_channel_records_total";
pub const DEAD_LETTERED: &str = "pricefeed_dead_lettered_total";
pub const PUBLISH_REPEATS: &str = "pricefeed_publish_repeats_dropped_total";
pub const WITHHELD: &str = "pricefeed_withheld_total";
pub const STALE: &str = "pricefeed_stale_records_total";
pub const TRANSFORM_SECONDS: &str = "pricefeed_transform_duration_seconds";
pub const SOURCE_AGE_SECONDS: &str = "pricefeed_source_age_seconds";
pub const CONSUMER_LAG: &str = "pricefeed_consumer_lag_records";
pub const CONFIG_RELOADS: &str = "pricefeed_config_reloads_total";
pub const RULES_INFO: &str = "pricefeed_rules_info";
pub const PRODUCE_ERRORS: &str = "pricefeed_produce_errors_total";
pub const SIMULATED: &str = "pricefeed_simulated_records_total";
pub const EDGE_CONNECTIONS: &str = "pricefeed_edge_connections";
pub const EDGE_RECORDS_IN: &str = "pricefeed_edge_records_in_total";
pub const EDGE_DELIVERED: &str = "pricefeed_edge_delivered_total";
pub const EDGE_CONFLATED: &str = "pricefeed_edge_conflated_total";
pub const EDGE_SLOW_CLOSES: &str = "pricefeed_edge_slow_consumer_closes_total";
pub const EDGE_AUTH_FAILURES: &str = "pricefeed_edge_auth_failures_total";
pub const EDGE_CLIENT_ERRORS: &str = "pricefeed_edge_client_errors_total";
pub const EDGE_LATENCY_SECONDS: &str = "pricefeed_edge_delivery_latency_seconds";
pub const EDGE_INTERNAL_SECONDS: &str = "pricefeed_edge_internal_latency_seconds";
pub const EDGE_RESUMES: &str = "pricefeed_edge_resumes_total";
pub const EDGE_PUBLISHED: &str = "pricefeed_edge_published_total";
pub const EDGE_BAD_RECORDS: &str = "pricefeed_edge_bad_records_total";
pub const EDGE_INFO: &str = "pricefeed_edge_info";
pub const EDGE_PARTITION_LAG: &str = "pricefeed_edge_partition_lag_records";
pub const EDGE_PARTITION_IDLE: &str = "pricefeed_edge_partition_idle_seconds";
pub const EDGE_PARTITION_STALLS: &str = "pricefeed_edge_partition_stalls_total";

/// How log lines are written (`--log-format`, `PRICEFEED_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Initialises logging to stderr: `RUST_LOG` filters (default
/// `info,rdkafka=warn,librdkafka=warn`), `format` picks text or JSON lines. Safe to call more
/// than once. No code path logs a token, an API key, a secret or a Kafka password
/// (tests/secrets_in_logs.rs checks both formats at debug level).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the Prometheus recorder and describes every metric. Returns the handle `/metrics`
/// renders from.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let latency_buckets = [
        0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.001_5,
        0.002, 0.002_5, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)?
        .install_recorder()?;
    describe_counter!(
        RAW_RECORDS,
        "Raw price records consumed from the raw topic."
    );
    describe_counter!(
        CHANNEL_RECORDS,
        "Records written to a channel's sub stream."
    );
    describe_counter!(
        DEAD_LETTERED,
        "Raw records copied to the dead-letter topic, by reason."
    );
    describe_counter!(
        PUBLISH_REPEATS,
        "Published raw records not quoted: the same (publisher, messageId) was quoted within \
         [edge] dedup_window_ms (a retry through another edge)."
    );
    describe_counter!(
        WITHHELD,
        "Prices a channel did not publish, by reason (stale, unquotable)."
    );
    describe_counter!(STALE, "Prices published with stale = true.");
    describe_histogram!(
        TRANSFORM_SECONDS,
        "Time to decode, price and enqueue one raw record for every channel."
    );
    describe_histogram!(
        SOURCE_AGE_SECONDS,
        "Age of a raw price (now - source ts) when it was transformed."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Raw-topic records not yet transformed, per partition."
    );
    describe_counter!(
        CONFIG_RELOADS,
        "channels.toml reload attempts, by result (applied, rejected)."
    );
    describe_gauge!(RULES_INFO, "1 for the rules version currently live.");
    describe_counter!(
        PRODUCE_ERRORS,
        "Kafka deliveries that failed for good (the worker stops)."
    );
    describe_counter!(
        SIMULATED,
        "Records written by the simulator, by kind (valid, malformed)."
    );
    describe_gauge!(EDGE_CONNECTIONS, "Open WebSocket connections.");
    describe_counter!(
        EDGE_RECORDS_IN,
        "Channel records the edge read from Kafka, per channel."
    );
    describe_counter!(
        EDGE_DELIVERED,
        "Price frames written to client sockets, per channel (live, replayed and conflated)."
    );
    describe_counter!(
        EDGE_CONFLATED,
        "Times a slow client was skipped ahead to the latest price per symbol, per channel."
    );
    describe_counter!(
        EDGE_SLOW_CLOSES,
        "Connections closed because the client could not keep up (slow_consumer), per reason."
    );
    describe_counter!(
        EDGE_AUTH_FAILURES,
        "Refused tokens and API keys, by reason."
    );
    describe_counter!(EDGE_CLIENT_ERRORS, "error frames sent to clients, by code.");
    describe_histogram!(
        EDGE_LATENCY_SECONDS,
        "Source timestamp of a price to the socket write that carried it (oldest frame of each write)."
    );
    describe_histogram!(
        EDGE_INTERNAL_SECONDS,
        "Time a price spent in this edge: from the reader's receipt of the record to the socket write that carried it (oldest frame of each write)."
    );
    describe_counter!(
        EDGE_RESUMES,
        "Resume requests, by where the replay came from (memory, kafka) or gap."
    );
    describe_counter!(
        EDGE_PUBLISHED,
        "Client publishes, by status (ok, duplicate, rejected, failed)."
    );
    describe_counter!(
        EDGE_BAD_RECORDS,
        "Channel-topic records the edge could not serve (no key, not a JSON object)."
    );
    describe_gauge!(
        EDGE_PARTITION_LAG,
        "Per channel partition: records Kafka has (up to the last stable offset) that the edge \
         has not read yet, at the last check."
    );
    describe_gauge!(
        EDGE_PARTITION_IDLE,
        "Per channel partition: how long the edge's position has not moved while Kafka had newer \
         records (0 when caught up)."
    );
    describe_counter!(
        EDGE_PARTITION_STALLS,
        "Per channel partition: stalls found (not advancing for [edge] stall_after_ms while Kafka \
         had newer records); each makes the reader re-seek the partition."
    );
    describe_gauge!(
        EDGE_INFO,
        "1, labelled with this edge's node id (tells one edge's series from another's)."
    );
    Ok(handle)
}

pub fn raw_records() -> Counter {
    counter!(RAW_RECORDS)
}

pub fn channel_records(channel: &str) -> Counter {
    counter!(CHANNEL_RECORDS, "channel" => channel.to_string())
}

pub fn stale_records(channel: &str) -> Counter {
    counter!(STALE, "channel" => channel.to_string())
}

pub fn withheld(channel: &str, reason: &'static str) -> Counter {
    counter!(WITHHELD, "channel" => channel.to_string(), "reason" => reason)
}

/// A published raw record not quoted: its (publisher, messageId) was quoted within the window.
pub fn publish_repeat_dropped() {
    counter!(PUBLISH_REPEATS).increment(1);
}

pub fn dead_lettered(reason: &'static str) {
    counter!(DEAD_LETTERED, "reason" => reason).increment(1);
}

pub fn transform_seconds() -> Histogram {
    histogram!(TRANSFORM_SECONDS)
}

pub fn source_age_seconds() -> Histogram {
    histogram!(SOURCE_AGE_SECONDS)
}

pub fn consumer_lag(partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "partition" => partition.to_string()).set(lag as f64);
}

pub fn config_reload(result: &'static str) {
    counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

/// Marks `version` as the live rules version (and only it).
pub fn rules_version(version: &str) {
    use std::sync::Mutex;
    static PREVIOUS: Mutex<Option<String>> = Mutex::new(None);
    let mut prev = PREVIOUS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = prev.take() {
        gauge!(RULES_INFO, "version" => old).set(0.0);
    }
    gauge!(RULES_INFO, "version" => version.to_string()).set(1.0);
    *prev = Some(version.to_string());
}

pub fn produce_error() {
    counter!(PRODUCE_ERRORS).increment(1);
}

pub fn simulated(kind: &'static str) -> Counter {
    counter!(SIMULATED, "kind" => kind)
}

/// Rate-limits a log line per cause: the first occurrence is logged, then at most one per
/// interval, each saying how many were suppressed in between.
pub struct LogLimiter {
    interval: std::time::Duration,
    causes: std::collections::HashMap<&'static str, (std::time::Instant, u64)>,
}

impl LogLimiter {
    pub fn new(interval: std::time::Duration) -> Self {
        Self {
            interval,
            causes: Default::default(),
        }
    }

    /// True when a line for `cause` may be logged now.
    pub fn allow(&mut self, cause: &'static str) -> bool {
        let now = std::time::Instant::now();
        match self.causes.get_mut(cause) {
            None => {
                self.causes.insert(cause, (now, 0));
                true
            }
            Some((last, suppressed)) if now.duration_since(*last) >= self.interval => {
                if *suppressed > 0 {
                    tracing::warn!(
                        cause,
                        suppressed = *suppressed,
                        "similar log lines suppressed"
                    );
                }
                *last = now;
                *suppressed = 0;
                true
            }
            Some((_, suppressed)) => {
                *suppressed += 1;
                false
            }
        }
    }
}

pub fn edge_connections(delta: f64) {
    gauge!(EDGE_CONNECTIONS).increment(delta);
}

pub fn edge_records_in(channel: &str) -> Counter {
    counter!(EDGE_RECORDS_IN, "channel" => channel.to_string())
}

pub fn edge_delivered(channel: &str) -> Counter {
    counter!(EDGE_DELIVERED, "channel" => channel.to_string())
}

pub fn edge_conflated(channel: &str) {
    counter!(EDGE_CONFLATED, "channel" => channel.to_string()).increment(1);
}

pub fn edge_slow_close(reason: &'static str) {
    counter!(EDGE_SLOW_CLOSES, "reason" => reason).increment(1);
}

pub fn edge_auth_failure(reason: &'static str) {
    counter!(EDGE_AUTH_FAILURES, "reason" => reason).increment(1);
}

pub fn edge_client_error(code: &'static str) {
    counter!(EDGE_CLIENT_ERRORS, "code" => code).increment(1);
}

pub fn edge_latency() -> Histogram {
    histogram!(EDGE_LATENCY_SECONDS)
}

pub fn edge_internal_latency() -> Histogram {
    histogram!(EDGE_INTERNAL_SECONDS)
}

pub fn edge_resume(source: &'static str) {
    counter!(EDGE_RESUMES, "source" => source).increment(1);
}

pub fn edge_published(status: &'static str) {
    counter!(EDGE_PUBLISHED, "status" => status).increment(1);
}

pub fn edge_bad_record(channel: &str) {
    counter!(EDGE_BAD_RECORDS, "channel" => channel.to_string()).increment(1);
}

/// One check of a partition's reading progress.
pub fn edge_partition_progress(channel: &str, partition: usize, lag: i64, idle_ms: u64) {
    let p = partition.to_string();
    gauge!(EDGE_PARTITION_LAG, "channel" => channel.to_string(), "partition" => p.clone())
        .set(lag as f64);
    gauge!(EDGE_PARTITION_IDLE, "channel" => channel.to_string(), "partition" => p)
        .set(idle_ms as f64 / 1000.0);
}

pub fn edge_partition_stall(channel: &str, partition: usize) {
    counter!(EDGE_PARTITION_STALLS, "channel" => channel.to_string(), "partition" => partition.to_string())
        .increment(1);
}

pub fn edge_info(node: &str) {
    gauge!(EDGE_INFO, "node" => node.to_string()).set(1.0);
}
