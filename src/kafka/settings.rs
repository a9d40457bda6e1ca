//! How to reach Kafka: the settings of every client (typed defaults, then any librdkafka option
//! the operator gives, per kind of client).

use std::time::Duration;

use rdkafka::config::ClientConfig;

/// How to reach Kafka. `options` are raw librdkafka settings applied last, so they override
/// everything pricefeed sets (security, timeouts, batching…). A key prefixed `consumer.` or
/// `producer.` applies only to that kind of client (`consumer.session.timeout.ms=6000`).
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub options: Vec<(String, String)>,
}

/// Option values are not shown: `sasl.password` and friends live there, and settings end up in
/// `{:?}` of whatever holds them.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.options.iter().map(|(k, _)| format!("{k}=…")).collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("options", &keys)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientKind {
    Consumer,
    Producer,
    Admin,
}

/// A Kafka failure with what pricefeed was doing at the time.
/// What every pricefeed producer sets before the user's options.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    // A record that fails for good must stop the worker before a later one lands, or the
    // resume rule would count the failed one as written.
    ("enable.gapless.guarantee", "true"),
    ("acks", "all"),
    // Send at once: a price is worth most when new. Batches still form while requests are in
    // flight (up to 5 with idempotence), so throughput holds up.
    ("linger.ms", "0"),
    ("compression.type", "lz4"),
    // Keyed records land where the Java client (and Kafka Streams, Connect…) would put them, so
    // every producer of the raw topic agrees on a symbol's partition.
    ("partitioner", "murmur2_random"),
];

/// The timeout for metadata and admin calls.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaSettings {
    pub(super) fn config(&self, kind: ClientKind, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // A broker that comes back (a restart, a network blip) is found within a second:
        // librdkafka's default backoff grows to 10 s between attempts, which a price feed
        // would show as up to 10 s of silence after the broker is already serving again.
        c.set("reconnect.backoff.max.ms", "1000");
        // Small requests go out at once (TCP_NODELAY); Kafka's side sets it too.
        c.set("socket.nagle.disable", "true");
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.options {
            let key = match (k.split_once('.'), kind) {
                (Some(("consumer", rest)), ClientKind::Consumer) => rest,
                (Some(("producer", rest)), ClientKind::Producer) => rest,
                (Some(("consumer" | "producer", _)), _) => continue,
                _ => k.as_str(),
            };
            c.set(key, v);
        }
        c
    }

    /// An idempotent producer: no duplicates or reordering from retries, acks from all replicas.
    pub fn producer_config(&self) -> ClientConfig {
        self.config(
            ClientKind::Producer,
            &[
                PRODUCER_DEFAULTS,
                // librdkafka's default, stated: the transform refuses lower values.
                &[("message.timeout.ms", "300000")],
            ]
            .concat(),
        )
    }

    /// A transactional producer with this `transactional.id`. A transaction left open by a
    /// crashed worker holds back `read_committed` readers of its partitions until the broker
    /// aborts it after `transaction.timeout.ms`, so that is short: a worker's transactions last
    /// its commit interval (100 ms by default).
    pub fn transactional_producer_config(&self, transactional_id: &str) -> ClientConfig {
        let mut c = self.config(
            ClientKind::Producer,
            &[PRODUCER_DEFAULTS, &[("transaction.timeout.ms", "10000")]].concat(),
        );
        c.set("transactional.id", transactional_id);
        c
    }

    /// A group member with manual offset storage and commits.
    pub fn group_consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = self.config(
            ClientKind::Consumer,
            &[
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("statistics.interval.ms", "5000"),
            ],
        );
        c.set("group.id", group_id);
        c
    }

    /// A consumer that only uses `assign` (no group, never commits).
    pub fn reader_config(&self) -> ClientConfig {
        self.config(
            ClientKind::Consumer,
            &[
                ("group.id", "pricefeed-reader"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_option_keys_but_not_their_values() {
        let s = KafkaSettings {
            brokers: "b:9092".into(),
            options: vec![("sasl.password".into(), "pw-4f1c".into())],
        };
        let shown = format!("{s:?}");
        assert!(
            shown.contains("sasl.password") && shown.contains("b:9092"),
            "{shown}"
        );
        assert!(!shown.contains("pw-4f1c"), "{shown}");
    }

    #[test]
    fn prefixed_options_reach_only_their_kind_of_client() {
        let s = KafkaSettings {
            brokers: "b:9092".into(),
            options: vec![
                ("consumer.session.timeout.ms".into(), "6000".into()),
                ("producer.linger.ms".into(), "7".into()),
                ("client.id".into(), "x".into()),
            ],
        };
        let c = s.group_consumer_config("g");
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("linger.ms"), None);
        assert_eq!(c.get("client.id"), Some("x"));
        let p = s.producer_config();
        assert_eq!(p.get("linger.ms"), Some("7"));
        assert_eq!(p.get("session.timeout.ms"), None);
        assert_eq!(p.get("enable.idempotence"), Some("true"));
    }
}
