//! The only module that builds rdkafka clients: typed settings plus a passthrough of any
//! librdkafka option, topic creation, metadata, and "read a partition to its end".

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

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
enum ClientKind {
    Consumer,
    Producer,
    Admin,
}

/// A Kafka failure with what pricefeed was doing at the time.
#[derive(Debug, thiserror::Error)]
pub enum KafkaFailure {
    #[error("{what}: {source}")]
    Client {
        what: String,
        #[source]
        source: KafkaError,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, KafkaFailure>;

pub(crate) fn ctx(what: impl Into<String>) -> impl FnOnce(KafkaError) -> KafkaFailure {
    let what = what.into();
    move |source| match source {
        // Not kept as the source: its Display (and so any error chain printed) holds the value.
        KafkaError::ClientConfig(..) => KafkaFailure::Other(format!("{what}: {}", shown(&source))),
        source => KafkaFailure::Client { what, source },
    }
}

/// A Kafka error as pricefeed shows it: a rejected option is named, never its value (librdkafka
/// quotes the value, and an option may hold a password, or run into one after a typo such as
/// `security.protocol=SASL_SSL,sasl.password:…`).
pub fn shown(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, description, key, value) => {
            let description = if value.is_empty() {
                description.clone()
            } else {
                description.replace(value.as_str(), "…")
            };
            format!("Kafka option {key} refused: {description} (its value is not shown)")
        }
        other => other.to_string(),
    }
}

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
    fn config(&self, kind: ClientKind, defaults: &[(&str, &str)]) -> ClientConfig {
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

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        AdminClient::from_config(&self.config(ClientKind::Admin, &[]))
            .map_err(ctx("creating a Kafka admin client"))
    }

    pub fn reader(&self) -> Result<BaseConsumer> {
        BaseConsumer::from_config(&self.reader_config()).map_err(ctx("creating a Kafka consumer"))
    }

    /// A reader tuned for low-latency reads of the channel topics (the edge's live reader and
    /// its replays): a fetch waits at most 10 ms for data unless the operator set
    /// `fetch.wait.max.ms`.
    pub fn live_reader(&self) -> Result<BaseConsumer> {
        let mut c = self.reader_config();
        if !self
            .options
            .iter()
            .any(|(k, _)| k.ends_with("fetch.wait.max.ms"))
        {
            c.set("fetch.wait.max.ms", "10");
        }
        BaseConsumer::from_config(&c).map_err(ctx("creating the edge's Kafka consumer"))
    }
}

/// Number of partitions of `topic`, or `None` when it does not exist.
pub fn partition_count<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    client: &C,
    topic: &str,
) -> Result<Option<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(ctx(format!("reading metadata of topic {topic}")))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(Some(t.partitions().len() as i32)),
        None => Ok(None),
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(None)
        }
        Some(e) => Err(KafkaFailure::Other(format!(
            "metadata of topic {topic}: {}",
            RDKafkaErrorCode::from(e)
        ))),
    }
}

/// [`partition_count`] on a blocking thread: the metadata request blocks for up to its timeout
/// when the broker is unreachable, and must not hold an async worker (signals, health checks and
/// every other task run there).
pub async fn partition_count_off_thread(
    client: &std::sync::Arc<BaseConsumer>,
    topic: &str,
) -> Result<Option<i32>> {
    let (client, topic) = (client.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || partition_count(&*client, &topic))
        .await
        .map_err(|e| KafkaFailure::Other(format!("metadata task: {e}")))?
}

/// Creates each topic that does not exist yet with `partitions` partitions, and checks that the
/// existing ones have at least that many.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[String],
    partitions: i32,
    replication_factor: i32,
) -> Result<()> {
    let admin = settings.admin()?;
    let reader = settings.reader()?;
    let mut missing = Vec::new();
    for t in topics {
        match partition_count(&reader, t)? {
            Some(n) if n >= partitions => {}
            Some(n) => {
                return Err(KafkaFailure::Other(format!(
                    "topic {t} has {n} partitions but needs at least {partitions} (one per raw \
                     partition); add partitions with your Kafka tools"
                )));
            }
            None => missing.push(t.as_str()),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication_factor)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(ctx("creating topics"))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaFailure::Other(format!(
                    "creating topic {name}: {code}"
                )));
            }
        }
    }
    // Wait until the new topics show up in metadata, so producers do not race the creation.
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    for t in missing {
        while partition_count(&reader, t)?.is_none() {
            if Instant::now() > deadline {
                return Err(KafkaFailure::Other(format!(
                    "topic {t} was created but does not appear in metadata"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Where [`read_to_end`] starts in a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    Offset(i64),
    /// The last record (`high watermark - 1`).
    Last,
}

/// Reads partitions from the given start offsets up to the end they had when called (their high
/// watermark), calling `on` for every record, and returns once each partition's end has been
/// reached: the record at `high - 1` was read, or the consumer's position passed it (the last
/// offsets may hold no record a consumer sees, such as transaction markers). For a start offset
/// at or past the end nothing is read.
pub fn read_to_end(
    reader: &BaseConsumer,
    starts: &[(String, i32, ReadFrom)],
    timeout: Duration,
    on: impl FnMut(&BorrowedMessage<'_>),
) -> Result<()> {
    let mut ranges = Vec::new();
    for (topic, partition, start) in starts {
        let (low, high) = reader
            .fetch_watermarks(topic, *partition, ADMIN_TIMEOUT)
            .map_err(ctx(format!("reading watermarks of {topic}/{partition}")))?;
        let start = match start {
            ReadFrom::Offset(o) => (*o).max(low).max(0),
            ReadFrom::Last => (high - 1).max(low).max(0),
        };
        ranges.push((topic.clone(), *partition, start, high));
    }
    read_range(reader, &ranges, timeout, on)
}

/// Reads each `(topic, partition, start, end)` from `start` up to `end` (exclusive), calling
/// `on` for every record below `end`. A partition is done once a record at or past `end - 1` was
/// read or the consumer's position reached `end` (offsets taken by transaction markers or
/// aborted records are never delivered).
pub fn read_range(
    reader: &BaseConsumer,
    ranges: &[(String, i32, i64, i64)],
    timeout: Duration,
    mut on: impl FnMut(&BorrowedMessage<'_>),
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    // Per partition, the end offset (exclusive).
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, start, end) in ranges {
        if end > start {
            ends.insert((topic.clone(), *partition), *end);
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*start))
                .map_err(ctx("building an assignment"))?;
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    reader
        .assign(&tpl)
        .map_err(ctx("assigning partitions to read"))?;
    let result = (|| {
        while !ends.is_empty() {
            if Instant::now() > deadline {
                let pending: Vec<String> = ends.keys().map(|(t, p)| format!("{t}/{p}")).collect();
                return Err(KafkaFailure::Other(format!(
                    "timed out reading {} to their end",
                    pending.join(", ")
                )));
            }
            match reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    let Some(end) = ends.get(&key).copied() else {
                        continue;
                    };
                    if m.offset() < end {
                        on(&m);
                    }
                    if m.offset() + 1 >= end {
                        ends.remove(&key);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    // Nothing more to read: done where the position is at the end.
                    let positions = reader.position().map_err(ctx("reading positions"))?;
                    ends.retain(|(t, p), end| {
                        !positions
                            .find_partition(t, *p)
                            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *end))
                    });
                }
                Some(Err(e)) => return Err(ctx("reading records")(e)),
            }
        }
        Ok(())
    })();
    let _ = reader.unassign();
    result
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
