//! How a transform worker runs, the options it refuses, and why it stops.

use std::time::Duration;

use crate::config::{Delivery, Rules};
use crate::kafka::KafkaSettings;

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
    Kafka(#[from] crate::kafka::KafkaFailure),
    #[error(
        "the broker refused the consumer group settings: {0}; session.timeout.ms must lie within \
         the broker's group.min.session.timeout.ms (6 s by default) and \
         group.max.session.timeout.ms (30 min)"
    )]
    GroupRefused(#[source] rdkafka::error::KafkaError),
    #[error("the raw topic {0:?} disappeared")]
    RawTopicGone(String),
    #[error("cannot enqueue a record for {topic}/{partition:?}: {source}")]
    Enqueue {
        topic: String,
        partition: Option<i32>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("the worker thread ended abnormally: {0}")]
    Thread(#[from] tokio::task::JoinError),
    /// A failure reported by librdkafka's callbacks (delivery reports, transactions), as text:
    /// it crosses from librdkafka's threads to the poll loop.
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

/// The consumer's `max.poll.interval.ms` (librdkafka's default: 300 s).
pub fn max_poll_interval(kafka: &KafkaSettings) -> Duration {
    kafka
        .options
        .iter()
        .rev()
        .find(|(k, _)| k == "max.poll.interval.ms" || k == "consumer.max.poll.interval.ms")
        .and_then(|(_, v)| v.trim().parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_millis)
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
