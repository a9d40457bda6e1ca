//! The edge's second Kafka client, on its own thread (`edge-probe`): every few seconds it checks
//! that Kafka answers (for `/readyz`), and every second, when the edge serves every channel, it
//! looks for channels added to channels.toml, positions their topics and hands them to the
//! [reader](super::reader). Everything here may wait on Kafka; the reader never does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rustc_hash::FxHashSet;
use tokio_util::sync::CancellationToken;

use super::position::position;
use super::reader::NewTopic;
use crate::config::reload::LiveRules;
use crate::edge::log::topic::{Hub, TopicLog};
use crate::kafka::{self, KafkaSettings};
use crate::telemetry::LogLimiter;

/// How often the edge checks that Kafka answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// How often the edge looks for channels added to channels.toml (when it serves every channel).
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Checks every [`PROBE_INTERVAL`] that Kafka answers (for `/readyz`) and, when the edge serves
/// every channel, every [`DISCOVERY_INTERVAL`] whether channels.toml gained a channel whose topic
/// exists (handed to the reader on `added`). It has a client of its own on its own thread: a
/// slow answer (a metadata request can block for seconds) must never hold the reader, or every
/// session would stall with it.
pub fn probe_loop(
    settings: &KafkaSettings,
    hub: Arc<Hub>,
    rules: LiveRules,
    kafka_error: Arc<AtomicBool>,
    added: Sender<NewTopic>,
    serves_every_channel: bool,
    shutdown: CancellationToken,
) {
    let client = match settings.reader() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("no Kafka probe for /readyz: {e}");
            return;
        }
    };
    let mut found: FxHashSet<String> = hub.topics().keys().cloned().collect();
    let mut waiting_logged: FxHashSet<String> = FxHashSet::default();
    let mut limiter = LogLimiter::new(Duration::from_secs(30));
    let mut next_probe = Instant::now();
    let mut next_discovery = Instant::now();
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_probe {
            next_probe = Instant::now() + PROBE_INTERVAL;
            probe(&client, &hub, &kafka_error);
        }
        if serves_every_channel && Instant::now() >= next_discovery {
            next_discovery = Instant::now() + DISCOVERY_INTERVAL;
            discover(
                &client,
                &hub,
                &rules,
                &mut found,
                &mut waiting_logged,
                &mut limiter,
                &added,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Hands every channel of the live rules that is not `found` yet, and whose topic exists, to the
/// reader.
fn discover(
    client: &BaseConsumer,
    hub: &Hub,
    rules: &LiveRules,
    found: &mut FxHashSet<String>,
    waiting_logged: &mut FxHashSet<String>,
    limiter: &mut LogLimiter,
    added: &Sender<NewTopic>,
) {
    let rules = rules.load();
    for c in &rules.channels {
        if found.contains(&c.name) {
            continue;
        }
        let count = match kafka::partition_count(client, &c.topic) {
            Ok(Some(n)) => n as usize,
            Ok(None) => {
                if waiting_logged.insert(c.name.clone()) {
                    tracing::info!(channel = %c.name, topic = %c.topic, "a channel added to channels.toml: waiting for its topic (the transform workers create it)");
                }
                continue;
            }
            Err(e) => {
                if limiter.allow("added-channel-metadata") {
                    tracing::warn!(channel = %c.name, "looking for an added channel's topic: {e}");
                }
                continue;
            }
        };
        let log = TopicLog::new(&c.name, &c.topic, count);
        match position(client, &log, hub.history, &hub.symbols) {
            Ok(ends) => {
                found.insert(c.name.clone());
                let _ = added.send(NewTopic {
                    log: Arc::new(log),
                    ends,
                });
            }
            Err(e) => {
                if limiter.allow("added-channel-position") {
                    tracing::warn!(channel = %c.name, "positioning an added channel: {e}");
                }
            }
        }
    }
}

fn probe(consumer: &BaseConsumer, hub: &Hub, error: &AtomicBool) {
    for topic in hub.topics().values() {
        for p in 0..topic.partitions.len() {
            if let Err(e) =
                consumer.fetch_watermarks(&topic.kafka_topic, p as i32, Duration::from_secs(2))
            {
                if !error.swap(true, Ordering::AcqRel) {
                    tracing::warn!("Kafka does not answer the edge: {e}");
                }
                return;
            }
        }
    }
    if error.swap(false, Ordering::AcqRel) {
        tracing::info!("Kafka answers the edge again");
    }
}
