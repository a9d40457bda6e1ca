//! The edge's second Kafka client, on its own thread (`edge-probe`): about every second it asks
//! Kafka for the end of every partition the edge serves, which tells whether Kafka answers (for
//! `/readyz`) and whether the reader keeps up
//! ([`Progress`](crate::edge::log::progress::Progress): lag, stalls, re-seeks); and every
//! second, when the edge serves every channel, it looks for channels added to channels.toml,
//! positions their topics and hands them to the [reader](super::reader). Everything here may
//! wait on Kafka; the reader never does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio_util::sync::CancellationToken;

use super::position::position;
use super::reader::NewTopic;
use crate::config::EdgeSettings;
use crate::config::reload::LiveRules;
use crate::edge::log::progress::Event;
use crate::edge::log::topic::{Hub, TopicLog};
use crate::kafka::{self, KafkaSettings};
use crate::telemetry;
use crate::telemetry::LogLimiter;

/// How often the edge checks the partitions: a fifth of `stall_after_ms`, within these bounds.
const CHECK_EVERY_MIN: Duration = Duration::from_millis(100);
const CHECK_EVERY_MAX: Duration = Duration::from_secs(1);

/// How often the edge looks for channels added to channels.toml (when it serves every channel).
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// How often the edge checks that its channel topics are still the ones it reads (the same
/// topic id: not deleted and created again).
const EPOCH_INTERVAL: Duration = Duration::from_secs(1);

/// Checks the partitions about every second (Kafka answers? the reader keeps up?) and, when the edge serves
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
    let mut next_epoch_check = Instant::now() + EPOCH_INTERVAL;
    // Topics handed to the reader as created again, by the id handed over.
    let mut renewing: FxHashMap<String, String> = FxHashMap::default();
    let clock = Instant::now();
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_probe {
            let edge = rules.load().edge.clone();
            let every = Duration::from_millis(edge.stall_after_ms / 5)
                .clamp(CHECK_EVERY_MIN, CHECK_EVERY_MAX);
            next_probe = Instant::now() + every;
            let now_ms = clock.elapsed().as_millis() as u64;
            check(&client, &hub, &kafka_error, &edge, now_ms);
        }
        if Instant::now() >= next_epoch_check {
            next_epoch_check = Instant::now() + EPOCH_INTERVAL;
            check_epochs(&client, &hub, &mut renewing, &mut limiter, &added);
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

/// Finds channel topics that were deleted and created again (a new topic id) and hands the new
/// life of each, positioned, to the reader, which serves it in place of the old one.
fn check_epochs(
    client: &BaseConsumer,
    hub: &Hub,
    renewing: &mut FxHashMap<String, String>,
    limiter: &mut LogLimiter,
    added: &Sender<NewTopic>,
) {
    let topics = hub.topics();
    let names: Vec<&str> = topics
        .values()
        .filter(|t| !t.epoch.is_empty())
        .map(|t| t.kafka_topic.as_str())
        .collect();
    let ids = match kafka::topic_ids(client, &names, Duration::from_secs(5)) {
        Ok(ids) => ids,
        Err(e) => {
            if limiter.allow("epoch-check") {
                tracing::warn!("checking the channel topics' ids: {e}");
            }
            return;
        }
    };
    for log in topics.values() {
        let Some(id) = ids.get(&log.kafka_topic) else {
            continue; // deleted and not created again (yet)
        };
        if *id == log.epoch || renewing.get(&log.kafka_topic) == Some(id) {
            continue;
        }
        let count = match kafka::partition_count(client, &log.kafka_topic) {
            Ok(Some(n)) => n as usize,
            _ => continue,
        };
        tracing::warn!(channel = %log.channel, topic = %log.kafka_topic, old = %log.epoch, new = %id, "the channel topic was deleted and created again");
        let fresh =
            TopicLog::new(&log.channel, &log.kafka_topic, count).with_epoch(Some(id.clone()));
        match position(client, &fresh, hub.history, &hub.symbols) {
            Ok(ends) => {
                renewing.insert(log.kafka_topic.clone(), id.clone());
                let _ = added.send(NewTopic {
                    log: Arc::new(fresh),
                    ends,
                });
            }
            Err(e) => {
                if limiter.allow("epoch-position") {
                    tracing::warn!(channel = %log.channel, "positioning the new life of a channel topic: {e}");
                }
            }
        }
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
        let epoch = kafka::topic_ids(client, &[c.topic.as_str()], Duration::from_secs(5))
            .ok()
            .and_then(|mut ids| ids.remove(&c.topic));
        let log = TopicLog::new(&c.name, &c.topic, count).with_epoch(epoch);
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

/// Asks Kafka for the end of every partition (for this read_committed client, the last stable
/// offset: an open transaction is not a stall) and checks the reader's progress against it.
fn check(consumer: &BaseConsumer, hub: &Hub, error: &AtomicBool, s: &EdgeSettings, now_ms: u64) {
    let mut unready = false;
    for topic in hub.topics().values() {
        for (p, log) in topic.partitions.iter().enumerate() {
            let end = match consumer.fetch_watermarks(
                &topic.kafka_topic,
                p as i32,
                Duration::from_secs(2),
            ) {
                Ok((_, end)) => end,
                Err(e) => {
                    if !error.swap(true, Ordering::AcqRel) {
                        tracing::warn!("Kafka does not answer the edge: {e}");
                    }
                    return;
                }
            };
            let o = log
                .progress
                .observe(end, log.next(), now_ms, s.stall_after_ms);
            telemetry::edge_partition_progress(&topic.channel, p, o.lag, o.idle_ms);
            let (channel, lag, idle_ms) = (&topic.channel, o.lag, o.idle_ms);
            match o.event {
                Event::None => {}
                Event::Stalled => {
                    telemetry::edge_partition_stall(channel, p);
                    tracing::warn!(%channel, partition = p, lag, idle_ms, "a partition stopped advancing while Kafka has newer records: re-seeking it");
                }
                Event::Reseek => {
                    tracing::warn!(%channel, partition = p, lag, idle_ms, "a partition is still stalled: re-seeking it again");
                }
                Event::Recovered { stalled_for_ms } => {
                    tracing::info!(%channel, partition = p, stalled_for_ms, "a stalled partition advances again");
                }
            }
            if lag > 0 && idle_ms >= s.stall_unready_after_ms {
                unready = true;
            }
        }
    }
    hub.set_stalled(unready);
    if error.swap(false, Ordering::AcqRel) {
        tracing::info!("Kafka answers the edge again");
    }
}
