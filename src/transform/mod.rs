//! Transform workers: `prices.raw` → `prices.<channel>` (and the dead-letter topic).
//!
//! A worker is a member of a Kafka consumer group on the raw topic. For each raw record and each
//! channel that carries its symbol it writes one record to the channel topic, same key, same
//! partition number, with the raw offset and the rules version in headers. Exactly-once output
//! comes from an idempotent producer plus the resume rule in [`resume`].

mod context;
pub mod encode;
pub mod process;
pub mod resume;
mod transaction;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::reload::LiveRules;
use crate::config::{Delivery, Rules};
use crate::kafka::{self, KafkaSettings};

pub use worker::{ERROR_DETAIL_HEADER, ERROR_HEADER, RAW_PARTITION_HEADER, RAW_TOPIC_HEADER};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct TransformOptions {
    pub kafka: KafkaSettings,
    /// Consumer group; workers of one group share the raw partitions.
    pub group_id: String,
    /// Serve only this channel (its own group, its own dead-letter topic).
    pub only_channel: Option<String>,
    /// How often output is flushed and the raw offsets committed (with transactional delivery:
    /// how long each transaction lasts). `None`: 1 s, or 100 ms with transactional delivery.
    pub commit_interval: Option<Duration>,
}

impl TransformOptions {
    /// The commit interval for a delivery mode.
    pub fn commit_interval(&self, delivery: Delivery) -> Duration {
        self.commit_interval.unwrap_or(match delivery {
            Delivery::Idempotent => Duration::from_secs(1),
            Delivery::Transactional => Duration::from_millis(100),
        })
    }
}

impl TransformOptions {
    /// The default group: `pricefeed-transform`, or `pricefeed-transform-<channel>`.
    pub fn default_group(only_channel: Option<&str>) -> String {
        match only_channel {
            None => "pricefeed-transform".to_string(),
            Some(c) => format!("pricefeed-transform-{c}"),
        }
    }

    /// Each worker group has its own dead-letter topic so that the resume rule also makes
    /// dead-lettering exactly-once: `<dead_letter_topic>` for all-channel workers,
    /// `<dead_letter_topic>.<channel>` for single-channel ones.
    pub fn dead_letter_topic(&self, rules: &Rules) -> String {
        match &self.only_channel {
            None => rules.kafka.dead_letter_topic.clone(),
            Some(c) => format!("{}.{c}", rules.kafka.dead_letter_topic),
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("unknown channel {0:?}: it is not in channels.toml")]
    UnknownChannel(String),
    #[error("Kafka option {0}={1} would break exactly-once output: {2}")]
    UnsafeOption(String, String, &'static str),
    #[error("the dead-letter topic {0:?} of this worker group is not usable: {1}")]
    DeadLetterTopic(String, &'static str),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("{0}")]
    Fatal(String),
}

/// The lowest `message.timeout.ms` a worker accepts (librdkafka's default).
const MIN_MESSAGE_TIMEOUT_MS: u64 = 300_000;

/// Refuses librdkafka options that would silently break the exactly-once mechanism.
pub fn check_options(kafka: &KafkaSettings, delivery: Delivery) -> Result<(), TransformError> {
    let idempotent = delivery == Delivery::Idempotent;
    for (key, value) in &kafka.options {
        let name = key
            .strip_prefix("consumer.")
            .or_else(|| key.strip_prefix("producer."))
            .unwrap_or(key);
        let v = value.trim().to_ascii_lowercase();
        let why = match name {
            "enable.idempotence" | "enable.gapless.guarantee" if v != "true" => {
                "the producer must be idempotent and gapless"
            }
            "acks" | "request.required.acks" if v != "all" && v != "-1" => {
                "records must be acknowledged by all in-sync replicas"
            }
            "enable.auto.commit" | "enable.auto.offset.store" if v != "false" => {
                "offsets are committed only after the output is acknowledged"
            }
            "partition.assignment.strategy" if v.contains("cooperative") => {
                "the worker uses eager rebalancing (range or roundrobin)"
            }
            "group.protocol" if v != "classic" => "the worker uses the classic group protocol",
            "message.timeout.ms" | "delivery.timeout.ms"
                if idempotent
                    && !v
                        .parse::<u64>()
                        .is_ok_and(|ms| ms == 0 || ms >= MIN_MESSAGE_TIMEOUT_MS) =>
            {
                "a record that times out is not covered by the gapless guarantee: a later record \
                 can land after it and the resume rule would then skip it for good; it must be \
                 0 (never) or at least 300000 (a worker whose output stalls stops after 60 s, \
                 long before that)"
            }
            "transactional.id" => {
                "pricefeed gives each worker its own with [kafka] delivery = \"transactional\""
            }
            "isolation.level" if !idempotent && v != "read_committed" => {
                "with transactional delivery, committed offsets must be read as stable \
                 (read_committed)"
            }
            _ => continue,
        };
        return Err(TransformError::UnsafeOption(
            key.clone(),
            value.clone(),
            why,
        ));
    }
    Ok(())
}

/// The channel topics a worker writes.
pub fn output_topics(rules: &Rules, only_channel: Option<&str>) -> Vec<String> {
    rules
        .channels
        .iter()
        .filter(|c| only_channel.is_none_or(|o| o == c.name))
        .map(|c| c.topic.clone())
        .collect()
}

/// Runs a transform worker until `shutdown`. Waits for the raw topic to exist, creates missing
/// output topics (same partition count as the raw topic), then consumes.
pub async fn run(
    opts: TransformOptions,
    live: LiveRules,
    shutdown: CancellationToken,
    ready: Arc<AtomicBool>,
) -> Result<(), TransformError> {
    let rules = live.load_full();
    check_options(&opts.kafka, rules.kafka.delivery)?;
    if let Some(c) = &opts.only_channel
        && rules.channel(c).is_none()
    {
        return Err(TransformError::UnknownChannel(c.clone()));
    }
    let dead_letter = opts.dead_letter_topic(&rules);
    if dead_letter.len() > 249 {
        return Err(TransformError::DeadLetterTopic(
            dead_letter,
            "longer than 249 characters",
        ));
    }
    if rules.channels.iter().any(|c| c.topic == dead_letter) || dead_letter == rules.kafka.raw_topic
    {
        return Err(TransformError::DeadLetterTopic(
            dead_letter,
            "it is also a channel or the raw topic",
        ));
    }
    let raw = rules.kafka.raw_topic.clone();
    let reader = std::sync::Arc::new(
        opts.kafka
            .reader()
            .map_err(|e| TransformError::Kafka(e.to_string()))?,
    );
    let mut waited = false;
    loop {
        let count = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = kafka::partition_count_off_thread(&reader, &raw) => c,
        };
        match count {
            Ok(Some(_)) => break,
            Ok(None) if !waited => {
                info!(topic = %raw, "waiting for the raw topic to be created");
                waited = true;
            }
            Ok(None) => {}
            Err(e) if !waited => {
                info!("waiting for Kafka at {}: {e}", opts.kafka.brokers);
                waited = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    drop(reader);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || worker::run_loop(opts, live, shutdown, ready, runtime))
        .await
        .map_err(|e| TransformError::Fatal(format!("worker thread panicked: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(options: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings {
            brokers: "b".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_single_channel_worker_has_a_group_of_its_own_by_default() {
        assert_eq!(TransformOptions::default_group(None), "pricefeed-transform");
        assert_eq!(
            TransformOptions::default_group(Some("wide")),
            "pricefeed-transform-wide"
        );
    }

    #[test]
    fn options_that_break_exactly_once_are_refused() {
        for bad in [
            ("enable.idempotence", "false"),
            ("producer.enable.gapless.guarantee", "false"),
            ("acks", "1"),
            ("consumer.enable.auto.commit", "true"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("group.protocol", "consumer"),
            ("producer.message.timeout.ms", "30000"),
            ("delivery.timeout.ms", "299999"),
            ("message.timeout.ms", "soon"),
        ] {
            let err = check_options(&with(&[bad]), Delivery::Idempotent).unwrap_err();
            assert!(err.to_string().contains(bad.0), "{err}");
        }
        check_options(
            &with(&[
                ("acks", "all"),
                ("consumer.session.timeout.ms", "6000"),
                ("partition.assignment.strategy", "roundrobin"),
                ("producer.message.timeout.ms", "600000"),
                ("message.timeout.ms", "0"),
            ]),
            Delivery::Idempotent,
        )
        .unwrap();
        // A transaction aborts on a timed-out record: no gap, so shorter timeouts are fine.
        check_options(
            &with(&[("message.timeout.ms", "5000")]),
            Delivery::Transactional,
        )
        .unwrap();
        for bad in [
            ("transactional.id", "x"),
            ("consumer.isolation.level", "read_uncommitted"),
        ] {
            let err = check_options(&with(&[bad]), Delivery::Transactional).unwrap_err();
            assert!(err.to_string().contains(bad.0), "{err}");
        }
    }
}
